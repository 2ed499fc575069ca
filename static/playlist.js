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
// The server may be down when the time comes (a restart, a deploy). A
// navigation then would leave the browser's own error page, which runs no
// script and never comes back. So the step is first asked for without
// following its redirect; only an answer (any answer) lets the page go, and
// a network failure keeps the current dashboard, whose own status shows the
// outage, and tries again a few seconds later.
//
// ES2017, no inline script: the page works under `script-src 'self'`.
(() => {
  'use strict';
  const me = document.getElementById('playlist');
  if (!me) {
    return;
  }
  const next = me.dataset.next || '';
  const seconds = Number(me.dataset.seconds);
  // Only a same-origin path: a data attribute must never send the kiosk
  // elsewhere.
  if (!next.startsWith('/') || next.startsWith('//') || !(seconds > 0)) {
    return;
  }
  const retry = 5000;

  const step = async () => {
    try {
      await fetch(next, { method: 'HEAD', redirect: 'manual', cache: 'no-store', credentials: 'same-origin' });
    } catch (e) {
      setTimeout(step, retry);
      return;
    }
    location.replace(next);
  };
  setTimeout(step, seconds * 1000);
})();
