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
//     broken item never stops the rotation.
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

  // after returns the step to the item after that of url.
  const after = (url) => {
    const u = new URL(url, location.href);
    u.searchParams.set('item', String((Number(u.searchParams.get('item')) || 0) + 1));
    return u.pathname + u.search;
  };

  const step = async (url) => {
    let res;
    try {
      res = await fetch(url, { method: 'HEAD', cache: 'no-store', credentials: 'same-origin' });
    } catch (e) {
      setTimeout(step, retry, url);
      return;
    }
    if (!res.ok) {
      setTimeout(step, retry, after(url));
      return;
    }
    location.replace(url);
  };
  setTimeout(step, seconds * 1000, next);
})();
