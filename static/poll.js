/*
 * poll.js: the long-poll transport of a live dashboard, and the status label
 * and "last change" display shared with app.js.
 *
 * Strict ES5 on purpose (no let/const, arrows, fetch, Promise or template
 * strings; XMLHttpRequest only) so it runs on kiosk browsers that cannot run
 * htmx 4. It starts by itself when the browser cannot hold the SSE stream
 * (no fetch, ReadableStream or htmx) or when #live has
 * data-transport="poll"; otherwise app.js starts it when its watchdog gives up
 * on the stream, through window.DashboardPoll.
 *
 * Protocol (docs/architecture.md, "Versions and resume"): GET data-poll-url?wait=25 with
 * If-None-Match: "<version>". 304: nothing changed, ask again at once.
 * 200: the body is a sequence of <hx-partial hx-target="#panel-x"
 * hx-swap="outerHTML">...</hx-partial>, and ETag is the new version.
 * An answer marked X-Dashboard-Draining: 1 (the server shuts down and
 * answered early, or refused with 503): ask again after a delay drawn from
 * 0.5-5 s, so that the pages of a draining server come to the others
 * spread out, not in one burst.
 * A 503 or 429 without that mark (a busy server: a limit was reached, or
 * access could not be checked): back off for its Retry-After (up to 30 s)
 * plus 1 s doubling to 30 s on consecutive ones, with jitter (busyDelay),
 * so that an overloaded server is not asked again by every page every few
 * seconds.
 * Anything else: back off 1 s doubling to 30 s, with jitter.
 *
 * Release (docs/architecture.md, "Rolling upgrade"): #live's data-release
 * is the release that drew the page; X-Dashboard-Release on an answer (and
 * the stream's opening heartbeat, through app.js) is the server's. When
 * they differ the page reloads, unless this tab already reloaded from the
 * page's release to that one (a bounded record of pairs in sessionStorage),
 * and at most once a minute: so a rolling upgrade from one release to
 * another reloads a page at most once, however long it lasts and whichever
 * server answers the reload, and a rollback reloads it once more, back;
 * otherwise it carries on with the full-state fragments.
 *
 * Status (#status, data-state and text): "polling" while the long-poll gets
 * answers, "stale" when none came for longer than a held poll may take
 * (wait plus STALE_MARGIN), "reconnecting" while requests fail, "gone" when
 * the dashboard was deleted. app.js sets the stream's states through
 * setStatus. "Last change" (#data-age) is when the data on screen last
 * changed: the server's time for the first paint (the datetime attribute),
 * then the moment this page received an update that changed the version.
 * It is formatted here, in the viewer's time zone, and never sent in a
 * shared fragment.
 */
(function (window, document) {
  'use strict';

  if (window.DashboardPoll) {
    return;
  }

  var DEFAULT_WAIT = 25; // seconds the server may hold a poll
  var MIN_BACKOFF = 1000; // ms
  var MAX_BACKOFF = 30000; // ms
  var MIN_INTERVAL_304 = 1000; // ms between polls that end in 304
  var GUARD = 15000; // ms added to wait before a silent request is abandoned
  var STALE_MARGIN = 5000; // ms past wait without an answer before "stale"
  var DRAIN_MIN = 500; // ms, the shortest pause after a drain's answer
  var DRAIN_MAX = 5000; // ms, the longest
  var RELOAD_EVERY = 60000; // ms, at least this between two reloads for a release
  var RELOAD_KEEP = 8; // reloads (from -> to) the record remembers, the latest
  var MAX_RETRY_AFTER = 30000; // ms, the most of a busy server's Retry-After honoured

  // What the status label says in each state.
  var LABELS = {
    snapshot: 'snapshot',
    connecting: 'connecting',
    live: 'live',
    reconnecting: 'reconnecting',
    polling: 'polling',
    stale: 'stale',
    gone: 'dashboard deleted'
  };

  var poller = {
    running: false,
    url: '',
    wait: DEFAULT_WAIT,
    onUpdate: null,
    xhr: null,
    quick: false, // the next request asks for an answer at once (wait=0)
    seq: 0, // bumped to invalidate the callbacks of an abandoned request
    timer: null,
    guard: null,
    failures: 0,
    busy: 0 // consecutive answers of a busy server (503 or 429, no drain)
  };
  var answeredAt = now(); // when the long-poll last got an answer
  var changedAt = initialChange(); // when the data on screen last changed
  var gone = false; // the dashboard was deleted: nothing more will come
  var ticker = null;
  // This page's long-poll client id (X-Dashboard-Client): the server
  // counts each long-poll client once among who is watching.
  var clientId = newClientId();

  function newClientId() {
    var id = '';
    var digits = 'abcdefghijklmnopqrstuvwxyz0123456789';
    var buf = null;
    try {
      buf = new window.Uint8Array(20);
      window.crypto.getRandomValues(buf);
    } catch (e) {
      buf = null;
    }
    for (var i = 0; i < 20; i++) {
      var r = buf ? buf[i] : Math.floor(Math.random() * 256);
      id += digits.charAt(r % digits.length);
    }
    return id;
  }

  // watchingText is what the page says of who is watching, as the server
  // renders it (views.Watching.Text): "12 watching", with the token labels
  // for a token's holder: "12 watching: lobby TV, ops laptop and 3 more".
  function watchingText(p) {
    var t = p.watching + ' watching';
    if (p.labels && p.labels.length) {
      t += ': ' + p.labels.join(', ');
      if (p.more > 0) {
        t += ' and ' + p.more + ' more';
      }
    }
    return t;
  }

  // showWatching draws who is watching, from the stream's presence event
  // or the long-poll's headers: {watching, labels, more}.
  function showWatching(p) {
    var el = byId('watching');
    if (!el || !p || typeof p.watching !== 'number') {
      return;
    }
    el.setAttribute('data-count', String(p.watching));
    setText(el, watchingText(p));
  }

  // watchingFromHeaders reads who is watching from a long-poll answer.
  function watchingFromHeaders(xhr) {
    var n = xhr.getResponseHeader('X-Dashboard-Watching');
    if (n === null || n === '' || isNaN(Number(n))) {
      return;
    }
    var p = { watching: Number(n) };
    var labels = xhr.getResponseHeader('X-Dashboard-Watching-Labels');
    if (labels) {
      try {
        var l = JSON.parse(decodeURIComponent(labels));
        p.labels = l.labels;
        p.more = l.more;
      } catch (e) {
        // a mangled header shows the count alone
      }
    }
    showWatching(p);
  }

  function now() {
    return new Date().getTime();
  }

  // initialChange is the time of the last change the server put on the
  // page (#data-age's datetime, RFC 3339), or now when it gave none or the
  // browser cannot parse it.
  function initialChange() {
    var el = document.getElementById('data-age');
    var t = el ? Date.parse(el.getAttribute('datetime') || '') : NaN;
    return isNaN(t) ? now() : t;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(el, text) {
    if ('textContent' in el) {
      el.textContent = text;
    } else {
      el.innerText = text;
    }
  }

  function live() {
    return byId('live');
  }

  function getVersion() {
    var el = live();
    return (el && el.getAttribute('data-version')) || '';
  }

  function setVersion(v) {
    var el = live();
    if (el && v) {
      el.setAttribute('data-version', v);
    }
  }

  // setStatus shows state (a key of LABELS) in #status, as its data-state
  // attribute (for styling) and its text; title, if given, says more on
  // hover.
  function setStatus(state, title) {
    var el = byId('status');
    if (!el) {
      return;
    }
    if (el.getAttribute('data-state') !== state) {
      el.setAttribute('data-state', state);
      setText(el, LABELS[state] || state);
    }
    title = title || '';
    if ((el.getAttribute('title') || '') !== title) {
      if (title) {
        el.setAttribute('title', title);
      } else {
        el.removeAttribute('title');
      }
    }
  }

  function getStatus() {
    var el = byId('status');
    return (el && el.getAttribute('data-state')) || '';
  }

  // markGone stops every update for good: the server said the dashboard was
  // deleted (410 here, or the stream's "gone" event in app.js).
  function markGone() {
    gone = true;
    stop();
    setStatus('gone');
  }

  // syncTitle keeps the tab's title equal to the dashboard's heading, which
  // a rename replaces as a partial; a full-screen panel's page (its body
  // carries data-panel) is titled "Panel — Dashboard", as the server
  // writes it.
  function syncTitle() {
    if (!document.querySelector) return;
    var h = document.querySelector('#heading h1');
    var t = h ? (h.textContent || h.innerText || '') : '';
    var solo = document.body && document.body.getAttribute('data-panel');
    var p = solo ? document.getElementById('panel-' + solo + '-title') : null;
    if (t && p) {
      t = (p.textContent || p.innerText || '') + ' \u2014 ' + t;
    }
    if (t && document.title !== t) {
      document.title = t;
    }
  }

  function pad(n) {
    return (n < 10 ? '0' : '') + n;
  }

  // changeText is the "last change" text for the instant at (ms since the
  // epoch) as seen at nowMs, in the browser's time zone: the time of day,
  // with the date in front when it was not today.
  function changeText(at, nowMs) {
    var d = new Date(at);
    var n = new Date(nowMs);
    var text = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    if (d.getFullYear() !== n.getFullYear() || d.getMonth() !== n.getMonth() || d.getDate() !== n.getDate()) {
      text = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + text;
    }
    return 'last change ' + text;
  }

  function renderChange() {
    var el = byId('data-age');
    if (el) {
      var text = changeText(changedAt, now());
      if ((el.textContent || el.innerText || '') !== text) {
        setText(el, text);
      }
    }
  }

  // markChanged records that the data on screen changed just now: an update
  // with a new version arrived, on either transport.
  function markChanged() {
    changedAt = now();
    var el = byId('data-age');
    if (el) {
      try {
        el.setAttribute('datetime', new Date(changedAt).toISOString());
      } catch (e) {
        // toISOString is missing before IE9; the text still updates.
      }
    }
    renderChange();
  }

  // tick redraws "last change" (its date appears at midnight) and calls a
  // long-poll stale when no answer came for longer than a held poll takes.
  function tick() {
    renderChange();
    if (poller.running && getStatus() === 'polling' && now() - answeredAt > poller.wait * 1000 + STALE_MARGIN) {
      setStatus('stale', 'no answer from the server for ' + Math.round((now() - answeredAt) / 1000) + ' s');
    }
  }

  function startTicker() {
    if (ticker === null) {
      renderChange();
      ticker = window.setInterval(tick, 1000);
    }
  }

  // parseETag returns the version in an ETag header value: W/ and the quotes
  // are stripped.
  function parseETag(etag) {
    if (!etag) {
      return '';
    }
    etag = etag.replace(/^\s+|\s+$/g, '');
    if (etag.indexOf('W/') === 0) {
      etag = etag.substring(2);
    }
    if (etag.length >= 2 && etag.charAt(0) === '"' && etag.charAt(etag.length - 1) === '"') {
      etag = etag.substring(1, etag.length - 1);
    }
    return etag;
  }

  // container returns a detached element to parse a response into. It lives
  // in an inert document where possible, so nothing in it (images, say) is
  // fetched before it is placed.
  function container() {
    var impl = document.implementation;
    if (impl && impl.createHTMLDocument) {
      try {
        return impl.createHTMLDocument('').createElement('div');
      } catch (e) {
        // fall through
      }
    }
    return document.createElement('div');
  }

  function adopt(node) {
    if (node.ownerDocument !== document && document.importNode) {
      return document.importNode(node, true);
    }
    return node;
  }

  function findTarget(selector) {
    if (!selector) {
      return null;
    }
    if (/^#[A-Za-z0-9_\-]+$/.test(selector)) {
      return byId(selector.substring(1));
    }
    try {
      return document.querySelector(selector);
    } catch (e) {
      return null;
    }
  }

  function htmxProcess(el) {
    var htmx = window.htmx;
    if (htmx && typeof htmx.process === 'function' && el.nodeType === 1) {
      try {
        htmx.process(el);
      } catch (e) {
        // content works without htmx attributes being wired
      }
    }
  }

  // SCROLLERS selects the parts of a panel a viewer scrolls by hand.
  var SCROLLERS = '.table-wrap, .feed';

  // keepView records where the viewer scrolled the tables and feeds inside
  // el, and which of them has the focus, keyed by panel, so that
  // restoreView can put them back on what replaces el: the long-poll
  // replaces panels whole, where the stream's morph keeps them in place.
  function keepView(el) {
    var kept = {};
    eachScroller(el, function (key, s) {
      kept[key] = {top: s.scrollTop, left: s.scrollLeft, focus: s === document.activeElement};
    });
    return kept;
  }

  function restoreView(el, kept) {
    eachScroller(el, function (key, s) {
      var k = kept[key];
      if (!k) {
        return;
      }
      s.scrollTop = k.top;
      s.scrollLeft = k.left;
      if (k.focus && s.focus) {
        s.focus();
      }
    });
  }

  // eachScroller calls fn for every scroller inside el, with a key made of
  // its panel's id and its place among that panel's scrollers.
  function eachScroller(el, fn) {
    if (!el.querySelectorAll) {
      return;
    }
    var list = el.querySelectorAll(SCROLLERS);
    var n = {};
    for (var i = 0; i < list.length; i++) {
      var panel = list[i];
      while (panel && !(panel.id && panel.id.indexOf('panel-') === 0)) {
        panel = panel.parentNode;
      }
      var id = panel ? panel.id : '';
      n[id] = (n[id] || 0) + 1;
      fn(id + '#' + n[id], list[i]);
    }
  }

  // applyPartials swaps every <hx-partial> of html into the page: the element
  // its hx-target names is replaced by the partial's child elements
  // (hx-swap="outerHTML", the default, and "outerMorph", which the stream's
  // htmx morphs and this script replaces, keeping the viewer's scroll
  // positions and focus) or has its content replaced (hx-swap="innerHTML").
  function applyPartials(html) {
    var box = container();
    box.innerHTML = html;
    var found = box.getElementsByTagName('hx-partial');
    var partials = [];
    var i, j;
    for (i = 0; i < found.length; i++) {
      partials.push(found[i]);
    }
    for (i = 0; i < partials.length; i++) {
      var p = partials[i];
      var target = findTarget(p.getAttribute('hx-target') || (p.id ? '#' + p.id : ''));
      if (!target || !target.parentNode) {
        continue;
      }
      var swap = (p.getAttribute('hx-swap') || 'outerHTML').split(' ')[0];
      var nodes = [];
      for (var c = p.firstChild; c; c = c.nextSibling) {
        if (swap === 'innerHTML' || c.nodeType === 1) {
          nodes.push(c);
        }
      }
      var added = [];
      var kept = keepView(target);
      if (swap === 'innerHTML') {
        while (target.firstChild) {
          target.removeChild(target.firstChild);
        }
        for (j = 0; j < nodes.length; j++) {
          added.push(target.appendChild(adopt(nodes[j])));
        }
      } else {
        var parent = target.parentNode;
        for (j = 0; j < nodes.length; j++) {
          added.push(parent.insertBefore(adopt(nodes[j]), target));
        }
        parent.removeChild(target);
      }
      for (j = 0; j < added.length; j++) {
        htmxProcess(added[j]);
        restoreView(added[j], kept);
      }
    }
    syncTitle();
  }

  function clearTimers() {
    if (poller.timer !== null) {
      window.clearTimeout(poller.timer);
      poller.timer = null;
    }
    if (poller.guard !== null) {
      window.clearTimeout(poller.guard);
      poller.guard = null;
    }
  }

  // abandon invalidates the request in flight, if any, and aborts it.
  function abandon() {
    poller.seq++;
    clearTimers();
    var xhr = poller.xhr;
    poller.xhr = null;
    if (xhr) {
      try {
        xhr.abort();
      } catch (e) {
        // already done
      }
    }
  }

  function schedule(delay) {
    if (!poller.running) {
      return;
    }
    if (poller.timer !== null) {
      window.clearTimeout(poller.timer);
    }
    poller.timer = window.setTimeout(function () {
      poller.timer = null;
      request();
    }, delay);
  }

  function failed() {
    poller.failures++;
    var d = MIN_BACKOFF * Math.pow(2, Math.min(poller.failures - 1, 10));
    if (d > MAX_BACKOFF) {
      d = MAX_BACKOFF;
    }
    // Equal jitter: half fixed, half random, so many kiosks that lost the
    // same server do not come back in step.
    d = d / 2 + Math.random() * (d / 2);
    // The next request may reach another server (or this one restarted):
    // it asks for an answer at once, so that the page learns that
    // server's state and release without waiting out a long-poll.
    poller.quick = true;
    setStatus('reconnecting');
    schedule(Math.round(d));
  }

  function request() {
    if (!poller.running) {
      return;
    }
    var seq = ++poller.seq;
    var started = now();
    var wait = poller.quick ? 0 : poller.wait;
    poller.quick = false;
    var url = poller.url + (poller.url.indexOf('?') < 0 ? '?' : '&') + 'wait=' + encodeURIComponent(wait);
    var xhr;
    try {
      xhr = new window.XMLHttpRequest();
      xhr.open('GET', url, true);
      var v = getVersion();
      if (v) {
        xhr.setRequestHeader('If-None-Match', '"' + v + '"');
      }
      xhr.setRequestHeader('X-Dashboard-Client', clientId);
      // The count this page shows: the server answers early when it
      // differs, so a long-poll page follows who is watching too.
      var shown = byId('watching');
      if (shown && shown.getAttribute('data-count')) {
        xhr.setRequestHeader('X-Dashboard-Watching', shown.getAttribute('data-count'));
      }
    } catch (e) {
      failed();
      return;
    }
    poller.xhr = xhr;
    xhr.onreadystatechange = function () {
      if (xhr.readyState !== 4 || seq !== poller.seq) {
        return;
      }
      poller.seq++;
      poller.xhr = null;
      if (poller.guard !== null) {
        window.clearTimeout(poller.guard);
        poller.guard = null;
      }
      if (poller.running) {
        handle(xhr, started);
      }
    };
    // Abandon a request the network silently dropped (no readystate 4 ever).
    poller.guard = window.setTimeout(function () {
      poller.guard = null;
      if (seq === poller.seq) {
        abandon();
        failed();
      }
    }, poller.wait * 1000 + GUARD);
    try {
      xhr.send(null);
    } catch (e2) {
      if (seq === poller.seq) {
        abandon();
        failed();
      }
    }
  }

  // drainDelay is the pause before the next request after a draining
  // server's answer, drawn uniformly from DRAIN_MIN to DRAIN_MAX.
  function drainDelay() {
    return Math.round(DRAIN_MIN + Math.random() * (DRAIN_MAX - DRAIN_MIN));
  }

  // retryAfterMs reads a Retry-After header (seconds, or an HTTP date) as
  // ms from now, at most MAX_RETRY_AFTER; 0 when it is missing or not
  // understood.
  function retryAfterMs(header) {
    var v = String(header || '').replace(/^\s+|\s+$/g, '');
    var ms = 0;
    if (/^\d+$/.test(v)) {
      ms = Number(v) * 1000;
    } else if (v) {
      var at = Date.parse(v);
      ms = isNaN(at) ? 0 : at - now();
    }
    if (!(ms > 0)) {
      return 0;
    }
    return Math.min(ms, MAX_RETRY_AFTER);
  }

  // busyDelay is the pause after the n-th consecutive answer of a busy
  // server (a 503 or 429 without X-Dashboard-Draining) whose Retry-After
  // is retryAfter: that long (up to MAX_RETRY_AFTER), plus MIN_BACKOFF
  // doubling with n up to MAX_BACKOFF, of which the upper half is random
  // (equal jitter). So the n+1-th pause is never shorter than the n-th
  // until the cap.
  function busyDelay(retryAfter, n) {
    n = n >= 1 ? n : 1;
    var g = Math.min(MAX_BACKOFF, MIN_BACKOFF * Math.pow(2, Math.min(n - 1, 10)));
    return Math.round(retryAfterMs(retryAfter) + g / 2 + Math.random() * (g / 2));
  }

  // refusedDelay is the pause after a refusal (503 or 429): the drain's
  // spread when the answer is marked as a drain's, whatever its
  // Retry-After, else busyDelay for the n-th consecutive busy answer.
  function refusedDelay(draining, retryAfter, n) {
    return draining ? drainDelay() : busyDelay(retryAfter, n);
  }

  function reloadKey() {
    return 'dashboard.releaseReload:' + window.location.pathname;
  }

  // readReloads returns the record of this tab's reloads for a release on
  // this path: {pairs: [[from, to], ...], at: ms}, each reload as the
  // release that drew the page and the release it reloaded for (the latest
  // RELOAD_KEEP), and when it last reloaded. A missing or unreadable record
  // is empty; an earlier script's record (a list of releases, or the bare
  // time) has no pairs and keeps its time as at.
  function readReloads(store) {
    var rec = { pairs: [], at: 0 };
    var raw = store.getItem(reloadKey());
    if (!raw) {
      return rec;
    }
    try {
      var v = JSON.parse(raw);
      if (typeof v === 'number') {
        rec.at = v;
      } else if (v && typeof v === 'object') {
        rec.at = Number(v.at) || 0;
        var pairs = v.pairs;
        if (pairs && pairs.length) {
          for (var i = 0; i < pairs.length; i++) {
            var pr = pairs[i];
            if (pr && pr.length === 2 && typeof pr[0] === 'string' && typeof pr[1] === 'string') {
              rec.pairs.push([pr[0], pr[1]]);
            }
          }
        }
      }
    } catch (e) {
      // a mangled record is an empty one
    }
    return rec;
  }

  // tried reports whether the record holds a reload from release from to
  // release to.
  function tried(rec, from, to) {
    for (var i = 0; i < rec.pairs.length; i++) {
      if (rec.pairs[i][0] === from && rec.pairs[i][1] === to) {
        return true;
      }
    }
    return false;
  }

  // remember adds the reload from -> to to the record as its latest pair,
  // keeping the latest RELOAD_KEEP.
  function remember(rec, from, to) {
    for (var i = 0; i < rec.pairs.length; i++) {
      if (rec.pairs[i][0] === from && rec.pairs[i][1] === to) {
        rec.pairs.splice(i, 1);
        break;
      }
    }
    rec.pairs.push([from, to]);
    while (rec.pairs.length > RELOAD_KEEP) {
      rec.pairs.shift();
    }
  }

  // reloadEvery is RELOAD_EVERY, or #live's data-reload-every (ms) when
  // present: the server never writes it; a test sets it to stand for the
  // minute having passed.
  function reloadEvery(el) {
    var v = el && el.getAttribute('data-reload-every');
    if (v !== null && v !== '' && v !== undefined && !isNaN(Number(v)) && Number(v) >= 0) {
      return Number(v);
    }
    return RELOAD_EVERY;
  }

  // checkRelease compares the release a server says it runs with the one
  // that drew the page. When they differ it reloads the page, unless this
  // tab already reloaded on this path from the page's release to that one
  // (the record keeps each reload as the pair from -> to), or reloaded at
  // all within RELOAD_EVERY, or the browser keeps no sessionStorage (which
  // could not stop a loop); then it carries on. So a page reloads at most
  // once for each pair of releases: a reload for B answered by a server of
  // A draws a page of A that does not reload for B again, however much
  // later; a page of B that meets A after a rollback reloads once, into A.
  // It reports whether the page is reloading.
  function checkRelease(release) {
    var el = live();
    var mine = (el && el.getAttribute('data-release')) || '';
    if (!release || !mine || release === mine) {
      return false;
    }
    var t = now();
    try {
      var store = window.sessionStorage;
      var rec = readReloads(store);
      if (tried(rec, mine, release)) {
        return false;
      }
      if (rec.at > 0 && t >= rec.at && t - rec.at < reloadEvery(el)) {
        return false;
      }
      remember(rec, mine, release);
      rec.at = t;
      store.setItem(reloadKey(), JSON.stringify(rec));
    } catch (e) {
      return false;
    }
    stop();
    window.location.reload();
    return true;
  }

  function handle(xhr, started) {
    var status = xhr.status;
    var draining = xhr.getResponseHeader('X-Dashboard-Draining') === '1';
    if ((status === 200 || status === 304) && checkRelease(xhr.getResponseHeader('X-Dashboard-Release'))) {
      return;
    }
    if (status === 200 || status === 304) {
      watchingFromHeaders(xhr);
      poller.busy = 0;
    }
    if (status === 503 || status === 429 || draining && status !== 200 && status !== 304) {
      // A draining server (the spread) or a busy one (its Retry-After and
      // a growing backoff): not a failure of the network, and the next
      // request asks for an answer at once.
      var busy = !draining && (status === 503 || status === 429);
      poller.busy = busy ? poller.busy + 1 : 0;
      answeredAt = now();
      poller.quick = true;
      setStatus('reconnecting');
      schedule(refusedDelay(!busy, xhr.getResponseHeader('Retry-After'), poller.busy));
      return;
    }
    if (status === 200) {
      var version = parseETag(xhr.getResponseHeader('ETag'));
      // A 200 for the version we already show (a cache turning our 304 into
      // its stored 200) changes nothing.
      if (!version || version !== getVersion()) {
        applyPartials(xhr.responseText || '');
        setVersion(version);
        markChanged();
        if (poller.onUpdate) {
          try {
            poller.onUpdate(version);
          } catch (e) {
            // a broken callback must not stop the loop
          }
        }
      }
      poller.failures = 0;
      answeredAt = now();
      setStatus('polling');
      poller.quick = draining;
      schedule(draining ? drainDelay() : 0);
      return;
    }
    if (status === 304) {
      poller.failures = 0;
      answeredAt = now();
      setStatus('polling');
      if (draining) {
        poller.quick = true;
        schedule(drainDelay());
        return;
      }
      // Loop at once, but never spin if something answers 304 immediately.
      var elapsed = now() - started;
      schedule(elapsed < MIN_INTERVAL_304 ? MIN_INTERVAL_304 - elapsed : 0);
      return;
    }
    if (status === 410) {
      markGone();
      return;
    }
    if (status === 404) {
      // Not necessarily gone: a revoked token or a catalog that has not
      // loaded yet answer 404 too. Keep trying, slowly.
      poller.failures = Math.max(poller.failures, 4);
    }
    failed();
  }

  // start begins the long-poll loop, or updates its options if it runs.
  // opts.url defaults to #live's data-poll-url, opts.wait to 25 seconds;
  // opts.onUpdate(version) is called after each applied update. With
  // opts.standIn (app.js, while the stream is down) the label is left as it
  // is until the server answers, and the first request asks for an answer
  // at once, so that "polling" is said only once it is true.
  function start(opts) {
    if (gone) {
      return false;
    }
    opts = opts || {};
    var el = live();
    var url = opts.url || (el && el.getAttribute('data-poll-url')) || '';
    if (!url) {
      return false;
    }
    poller.url = url;
    poller.wait = opts.wait >= 0 ? opts.wait : DEFAULT_WAIT;
    if (opts.onUpdate) {
      poller.onUpdate = opts.onUpdate;
    }
    startTicker();
    if (poller.running) {
      return true;
    }
    poller.running = true;
    poller.failures = 0;
    poller.busy = 0;
    answeredAt = now();
    poller.quick = !!opts.standIn;
    if (!opts.standIn) {
      setStatus('polling');
    }
    request();
    return true;
  }

  // stop ends the loop and aborts the request in flight; a response that
  // arrives afterwards is ignored. It leaves #status to the caller.
  function stop() {
    poller.running = false;
    abandon();
  }

  window.DashboardPoll = {
    start: start,
    stop: stop,
    running: function () {
      return poller.running;
    },
    version: getVersion,
    setVersion: setVersion,
    status: setStatus,
    state: getStatus,
    gone: markGone,
    isGone: function () {
      return gone;
    },
    syncTitle: syncTitle,
    changed: markChanged,
    changeText: changeText,
    parseETag: parseETag,
    checkRelease: checkRelease,
    drainDelay: drainDelay,
    busyDelay: busyDelay,
    refusedDelay: refusedDelay,
    applyPartials: applyPartials,
    showWatching: showWatching,
    watchingText: watchingText
  };

  function canStream() {
    return !!(window.fetch && window.ReadableStream && window.htmx);
  }

  function boot() {
    var el = live();
    if (!el) {
      return;
    }
    startTicker();
    if (!canStream() || el.getAttribute('data-transport') === 'poll') {
      start({});
    }
  }

  if (document.readyState === 'loading') {
    if (document.addEventListener) {
      document.addEventListener('DOMContentLoaded', boot, false);
    } else if (window.attachEvent) {
      window.attachEvent('onload', boot);
    }
  } else {
    boot();
  }
}(window, document));
