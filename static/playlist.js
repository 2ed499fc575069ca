// playlist.js moves a kiosk on to the next dashboard of its playlist. The
// page loads it only when it is shown as an item of a playlist
// (/d/{slug}?kiosk&playlist={p}&item={n}), from a script element that carries
// the next step:
//
//   <script id="playlist" src="/static/playlist.….js"
//           data-next="/p/{p}?item={n+1}" data-seconds="30" defer>
//
// After data-seconds it replaces the page with data-next: the server
// answers that address with a redirect to the next dashboard that exists,
// rendered with its current data, so the new page shows numbers at once.
// Navigating closes this page's stream, so a kiosk holds one stream, and two
// only while the next page opens its own: well inside HTTP/1.1's six
// connections per origin. location.replace keeps the history from growing
// on a kiosk that runs for months.
//
// Before it goes, the script asks for the next page itself (HEAD, following
// the redirect). That makes the server prepare the next dashboard's view, so
// the page arrives with fresh data at once, and it tells whether the page
// can be shown:
//   - an answer 2xx: go;
//   - no answer (the server is down: a restart, a deploy): stay on the current
//     dashboard, whose own status shows the outage, and ask again after a few
//     seconds. Going would leave the browser's own error page, which runs no
//     script and never comes back;
//   - an error answer (the item's variables refused, the server busy): stay
//     too, and ask for the item after it a few seconds later, so that one
//     broken item never stops the rotation (the server wraps a position
//     past the end round to the start).
//
// ES5, like poll.js: a kiosk TV whose browser cannot run htmx 4 shows its
// dashboards through the long-poll, and must rotate as well. No inline
// script: the page works under `script-src 'self'`.
(function () {
  'use strict';
  var me = document.getElementById('playlist');
  if (!me || !window.XMLHttpRequest) {
    return;
  }
  var next = me.getAttribute('data-next') || '';
  var seconds = Number(me.getAttribute('data-seconds'));
  var RETRY = 5000;

  // resolve returns the address of path on this page's origin, or '' when
  // it would leave it: a data attribute must never send the kiosk
  // elsewhere (a browser reads "/\\host" as "//host", so the resolved
  // origin is compared, not the text).
  function resolve(path) {
    var a = document.createElement('a');
    a.href = path;
    if (a.protocol !== location.protocol || a.host !== location.host) {
      return '';
    }
    return a.href;
  }

  // after returns the step to the item after that of url.
  function after(url) {
    var m = /([?&]item=)(\d*)/.exec(url);
    if (!m) {
      return url + (url.indexOf('?') < 0 ? '?' : '&') + 'item=1';
    }
    return url.slice(0, m.index) + m[1] + ((Number(m[2]) || 0) + 1) + url.slice(m.index + m[0].length);
  }

  function step(url) {
    var xhr = new XMLHttpRequest();
    xhr.open('HEAD', url, true);
    xhr.setRequestHeader('Cache-Control', 'no-store');
    xhr.onreadystatechange = function () {
      if (xhr.readyState !== 4) {
        return;
      }
      if (xhr.status === 0) {
        // No answer: the server is down. Stay, and ask again.
        setTimeout(function () { step(url); }, RETRY);
      } else if (xhr.status < 200 || xhr.status > 299) {
        setTimeout(function () { step(after(url)); }, RETRY);
      } else {
        location.replace(url);
      }
    };
    xhr.send();
  }

  next = resolve(next);
  if (next && seconds > 0) {
    setTimeout(function () { step(next); }, seconds * 1000);
  }
})();
