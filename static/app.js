// app.js keeps a live dashboard on its SSE stream (htmx 4 + hx-sse), says
// truthfully in #status whether it is, and lets the long-poll in poll.js
// (window.DashboardPoll) stand in while the stream cannot be had.
//
// Loaded with defer after hx-sse.min.js; htmx.min.js is a classic script at
// the end of the body, so it has run by then and starts itself at
// DOMContentLoaded, after the extension is registered. The page loads
// poll.js after this script, so the body below runs once window.DashboardPoll
// exists: at DOMContentLoaded, when every deferred script has run. No inline
// script anywhere, so the page works under `script-src 'self'`.
//
// Page contract:
//   <div id="live" hx-sse:connect="/d/{slug}/events?lastEventId=V" hx-swap="none"
//        data-poll-url="/d/{slug}/poll" data-version="V" data-transport="sse|poll"
//        data-release="R">
//   <span id="status" data-state="snapshot" data-heartbeat="15000"> (the
//   stream's heartbeat interval in ms) and <time id="data-age" datetime="...">
//   (when the data last changed; poll.js shows it)
//
// The status label (docs/architecture.md, "The status label"):
//   connecting    the first stream is being opened
//   live          the stream delivers: its opening heartbeat, an update or a
//                 heartbeat arrived within the heartbeat interval plus a margin
//   stale         the stream is open but nothing arrived for longer than that
//   reconnecting  the stream is lost and being reopened (and the long-poll,
//                 if it stands in, gets no answer either)
//   polling       the long-poll stands in and gets answers
//   gone          the dashboard was deleted
//
// Every stream opens with a heartbeat event, so "live" follows a
// (re)connection at once and means that bytes arrive, not only that a
// response began. hx-sse reconnects by itself (with Last-Event-ID) after a
// stream ends; this script caps its backoff at RETRY_MAX, so the page is live
// again within a few seconds of the server's return. After FALLBACK_AFTER
// failed attempts, or a first request that did not become a stream (hx-sse
// never retries that one; this script opens a new one), the long-poll runs
// alongside the attempts and stops as soon as the stream delivers again.
// Once FALLBACK_AFTER attempts since the stream last delivered were answered
// without a working stream (an error status, or a stream that stays silent:
// a buffering proxy), the next ones back off to PROBE_MAX instead, since the
// long-poll serves meanwhile.
//
// A draining server sends each stream a goodbye (a retry drawn from 0.5-5 s
// and the reconnect event): that pause is honoured exactly, so the pages of
// one server come back spread out. A 503 (or 429) never moves the page to
// the slow probes: marked X-Dashboard-Draining, a first request's is
// tried again after the drain's 0.5-5 s spread; otherwise the server is
// busy, and the next attempt waits its Retry-After plus a backoff that
// doubles on consecutive ones up to 30 s (poll.js, busyDelay). A
// reconnect's 503 shows hx-sse no headers: it is taken for busy, without
// a Retry-After. The opening heartbeat's data is the server's release; a
// page drawn by another one reloads at most once per release (poll.js,
// checkRelease; docs/architecture.md, "Drain" and "Rolling upgrade").
//
// How the stream is closed: removing the hx-sse:connect attribute and calling
// htmx.process(live, true) makes htmx tear the element down, which runs
// hx-sse's htmx_before_cleanup hook: it cancels the stream reader, aborts the
// fetch, cancels a pending reconnect delay and fires htmx:sse:close.
//
// Everything is inside one function, so that no name leaks into the global
// scope that other classic scripts share.
(() => {
  const CONNECT_TIMEOUT = 10_000; // ms from a request to the stream's opening heartbeat
  const RETRY_MAX = 3000; // ms, longest pause between attempts while the server is unreachable
  // hx-sse's jitter of its pauses (±30 %), as configured.
  const JITTER = Number(window.htmx?.config?.sse?.reconnectJitter ?? 0.3);

  // Every stream connection, first or reconnect, has at most CONNECT_TIMEOUT
  // to answer, and hx-sse's reconnect backoff stops at RETRY_MAX. Set before
  // DOMContentLoaded, when htmx opens the first stream (htmx, a classic script
  // at the end of the body, has run before this deferred one).
  if (window.htmx) {
    window.htmx.config.sse = {...window.htmx.config.sse, connectTimeout: CONNECT_TIMEOUT, reconnectMaxDelay: RETRY_MAX};
  }

  // The pickers form (#pickers) is a plain GET form with an Apply button; a
  // new choice in a single-valued select applies at once. Multi-valued selects
  // wait for Apply, so that several values can be picked. A query variable
  // whose options depend on an earlier one (data-depends) is left out of the
  // next request once an earlier field changed, so it takes its default among
  // its new options instead of keeping a value they may no longer offer.
  document.addEventListener('change', (e) => {
    const el = e.target;
    const form = el.form;
    if (!form || form.id !== 'pickers') return;
    let after = false;
    for (const f of form.elements) {
      if (f === el) after = true;
      else if (after && f.hasAttribute('data-depends')) f.disabled = true;
    }
    if (el.tagName === 'SELECT' && !el.multiple) form.requestSubmit();
  });

  ((main) => {
    // Deferred scripts run while readyState is already 'interactive', before
    // DOMContentLoaded.
    if (window.DashboardPoll || document.readyState === 'complete') main();
    else document.addEventListener('DOMContentLoaded', main);
  })(() => {
    'use strict';

    const live = document.getElementById('live');
    const poll = window.DashboardPoll;
    // Without htmx (or poll.js) there is no stream to watch: poll.js has
    // already started the long-poll by itself.
    if (!live || !poll || !window.htmx) return;
    const htmx = window.htmx;

    const beat = Number(document.getElementById('status')?.getAttribute('data-heartbeat'));
    const HEARTBEAT = beat > 0 ? beat : 15_000; // ms between heartbeats on a quiet stream
    // The server sends a heartbeat once a stream was quiet for HEARTBEAT, and
    // checks at most a second late; the margin covers that and the network.
    const STALE_AFTER = HEARTBEAT + Math.max(HEARTBEAT / 2, 2000);
    // A stream stale for this long more is taken for dead (a half-open
    // connection, a laptop that slept) and reopened.
    const DROP_AFTER = STALE_AFTER + Math.max(HEARTBEAT, 5000);
    const PROBE_MAX = 30_000; // ms, the same while it answers without a working stream
    const FALLBACK_AFTER = 3; // failed attempts before the long-poll stands in
    const ATTRS = ['hx-sse:connect', 'data-hx-sse:connect'];

    const connectAttr = ATTRS.find((a) => live.hasAttribute(a)) || ATTRS[0];
    const connectURL = live.getAttribute(connectAttr) || '';
    // The page asked for the long-poll, or this browser cannot read a
    // stream (poll.js has started the long-poll by itself then).
    const forced = live.getAttribute('data-transport') === 'poll' || !connectURL ||
      !(window.fetch && window.ReadableStream);

    let mode = forced ? 'poll' : 'sse'; // 'sse', 'poll' (forced by the page) or 'gone'
    let conn = null; // hx-sse's connection while a response is streaming
    let openedAt = 0; // when conn's response arrived
    let delivering = false; // conn delivered an event
    let lastSignal = 0; // when conn last delivered one
    let first = null; // a first request in flight: {at}
    let attempts = 0; // consecutive attempts that did not deliver
    let refused = 0; // of those, the ones the server answered without a working stream
    let rearm = null; // timer for a new first request
    let busy = 0; // consecutive attempts a busy server refused (503 or 429, no drain)
    let baseDelay = null; // hx-sse's reconnectDelay before a busy pause replaced it
    let closing = false; // this script is closing the stream

    const isLive = (e) => e.target === live;
    const now = () => Date.now();

    function announce(transport, reason) {
      live.dispatchEvent(new CustomEvent('dashboard:transport', {detail: {transport, reason}}));
    }

    // show sets the label for the stream's state, unless the long-poll
    // stands in and speaks for itself.
    function show(state, title) {
      if (!poll.running() || state === 'live') poll.status(state, title);
    }

    // fallback lets the long-poll stand in while the stream is down.
    function fallback(reason) {
      if (mode !== 'sse' || poll.running()) return;
      poll.start({
        url: live.getAttribute('data-poll-url'),
        standIn: true,
        // A reconnect of hx-sse then resumes from what the long-poll showed.
        onUpdate: (v) => {
          if (live._htmx?.sse && v) live._htmx.sse.lastEventId = v;
        },
      });
      announce('poll', reason);
    }

    // failed counts an attempt that did not deliver; answered says whether the
    // server (or a proxy) answered it, i.e. it is up but gives no stream.
    function failed(reason, answered) {
      delivering = false;
      attempts++;
      if (answered) refused++;
      show('reconnecting');
      if (attempts >= FALLBACK_AFTER) fallback(reason);
    }

    // backoff is the longest pause before the next attempt.
    const backoff = () => (refused >= FALLBACK_AFTER ? PROBE_MAX : RETRY_MAX);

    // closeStream stops hx-sse on #live (see the header comment).
    function closeStream() {
      // A request that has not turned into a stream yet sits in #live's htmx
      // request queue; htmx:abort aborts it so it cannot block the next one.
      live.dispatchEvent(new CustomEvent('htmx:abort'));
      closing = true;
      try {
        for (const a of ATTRS) live.removeAttribute(a);
        htmx.process(live, true); // cleanup -> hx-sse htmx_before_cleanup
      } finally {
        closing = false;
      }
      conn = null;
      first = null;
    }

    // open starts a new first request for the stream, from the version the
    // page shows.
    function open() {
      clearTimeout(rearm);
      rearm = null;
      if (mode !== 'sse') return;
      closeStream();
      const u = new URL(connectURL, location.href);
      const v = poll.version();
      if (v) u.searchParams.set('lastEventId', v);
      live.setAttribute(connectAttr, u.pathname + u.search);
      first = {at: now()};
      htmx.process(live, true);
      announce('sse', 'open');
    }

    // reopen schedules open after pause (ms), or else after the backoff,
    // with jitter, so that many pages that lost the same server do not come
    // back in step.
    function reopen(pause) {
      if (mode !== 'sse' || rearm) return;
      const d = backoff();
      rearm = setTimeout(open, pause ?? d / 2 + Math.random() * d / 2);
    }

    // drop ends the current stream's response; hx-sse then reconnects after
    // its backoff, with Last-Event-ID.
    function drop() {
      const c = conn;
      conn = null;
      delivering = false;
      if (c?.reader) c.reader.cancel().catch(() => {});
      else c?.abortController?.abort();
    }

    live.addEventListener('htmx:sse:before:connection', (e) => {
      if (!isLive(e)) return;
      const c = e.detail?.connection;
      if (mode !== 'sse') {
        // Cancelling a reconnect ends hx-sse's loop. The first connection
        // (attempt 0) is not cancelled here: hx-sse would then never release
        // the htmx request; it is aborted in after:connection instead.
        if (c && c.attempt > 0) e.preventDefault();
        return;
      }
      if (c && c.attempt > 0) {
        // The stream ended or an attempt failed; hx-sse has chosen its
        // pause and waits, then tries again. The pause after this one
        // follows what failed so far, with hx-sse's jitter (a goodbye
        // turned it off for the pause it chose, a busy server's answer
        // replaced its base delay).
        if (c.config) {
          c.config.reconnectMaxDelay = backoff();
          c.config.reconnectJitter = JITTER;
          if (baseDelay !== null) c.config.reconnectDelay = baseDelay;
          baseDelay = null;
        }
        conn = null;
        delivering = false;
        show('reconnecting');
      }
    });

    live.addEventListener('htmx:sse:after:connection', (e) => {
      if (!isLive(e)) return;
      const c = e.detail?.connection;
      if (mode !== 'sse') {
        c?.abortController?.abort();
        return;
      }
      if (c?.config) c.config.reconnectMaxDelay = backoff();
      busy = 0;
      conn = c;
      first = null;
      openedAt = now();
      delivering = false;
    });

    live.addEventListener('htmx:sse:before:message', (e) => {
      if (isLive(e) && mode !== 'sse') e.preventDefault();
    });

    live.addEventListener('htmx:sse:after:message', (e) => {
      if (!isLive(e) || mode !== 'sse') return;
      const m = e.detail?.message || {};
      if (m.event === 'reconnect') {
        // The server drains. hx-sse reconnects when the stream ends, after
        // the retry the goodbye carried (it has applied it already): each
        // stream of the server got its own, spread over 0.5-5 s, so that
        // they land on the other servers over seconds, not in one burst.
        // That pause must be honoured as it is: not cut to RETRY_MAX, and
        // without hx-sse's own jitter, which would bunch the spread's ends.
        const c = e.detail?.connection;
        const d = Number(c?.config?.reconnectDelay);
        if (c?.config && d > 0) {
          c.config.reconnectMaxDelay = Math.max(d, RETRY_MAX);
          c.config.reconnectJitter = 0;
        }
        conn = null;
        delivering = false;
        show('reconnecting');
        announce('sse', 'server draining');
        return;
      }
      // The opening heartbeat carries the server's release: a page drawn
      // by another release reloads once (poll.js, checkRelease).
      if (m.event === 'heartbeat' && m.data && poll.checkRelease(String(m.data).trim())) return;
      conn = e.detail?.connection || conn;
      delivering = true;
      lastSignal = now();
      attempts = 0;
      refused = 0;
      if (conn?.config) conn.config.reconnectMaxDelay = RETRY_MAX;
      if (poll.running()) {
        poll.stop();
        announce('sse', 'delivering');
      }
      poll.status('live');
      // An update (an unnamed message) carries the new version as its id.
      if (!m.event && m.id && m.id !== poll.version()) {
        poll.setVersion(m.id);
        poll.changed();
      }
      poll.syncTitle();
    });

    // Who is watching ("event: presence", JSON {watching, labels, more}):
    // drawn on the status line, never into a shared fragment.
    live.addEventListener('presence', (e) => {
      if (mode !== 'sse') return;
      try {
        poll.showWatching(JSON.parse(e.detail?.data || ''));
      } catch (err) {
        // a malformed event changes nothing
      }
    });

    // The dashboard was deleted ("event: gone"): say so and stop, rather than
    // reconnect to an address that now answers 404.
    live.addEventListener('gone', () => {
      if (mode !== 'sse') return;
      mode = 'gone';
      clearTimeout(rearm);
      closeStream();
      poll.gone();
      announce('none', 'gone');
    });

    // A 503 or 429 is a server that drains or is busy: it is there and
    // will serve again, so it never moves the page to the slow probes; the
    // pause before the next attempt is refusedPause's.
    const refusal = (status) => status === 503 || status === 429;
    const answeredBadly = (status) => status != null && !refusal(status);

    // refusedPause is the pause after a refusal whose headers are known
    // (null: not known): the drain's spread when it is marked as a drain's,
    // else the busy server's backoff, which grows with each refusal in a row.
    function refusedPause(headers) {
      if (headers?.get('X-Dashboard-Draining') === '1') return poll.refusedDelay(true);
      busy++;
      return poll.refusedDelay(false, headers?.get('Retry-After') ?? '', busy);
    }

    live.addEventListener('htmx:sse:error', (e) => {
      if (!isLive(e) || mode !== 'sse') return;
      conn = null;
      const status = e.detail?.status;
      const c = e.detail?.connection;
      if (refusal(status) && c?.config) {
        // hx-sse tries again after min(reconnectDelay * 2^n,
        // reconnectMaxDelay), computed from the config when it loops after
        // this event: both set to the pause make it exactly that, jitter
        // included. before:connection puts the base delay back.
        const d = refusedPause(null);
        if (baseDelay === null) baseDelay = c.config.reconnectDelay;
        c.config.reconnectDelay = d;
        c.config.reconnectMaxDelay = d;
        c.config.reconnectJitter = 0;
      }
      failed('stream error', answeredBadly(status));
    });

    // hx-sse fires close when its loop ends for good; it will not reconnect,
    // so open a new stream after the backoff.
    live.addEventListener('htmx:sse:close', (e) => {
      if (!isLive(e) || mode !== 'sse' || closing) return;
      conn = null;
      failed('closed', false);
      reopen();
    });

    // The events endpoint answered without becoming a stream (an error status,
    // a login page) or not at all (a network failure, a timeout): hx-sse
    // never retries that first request, so open another after the backoff.
    const requestFailed = (e) => {
      if (!isLive(e) || mode !== 'sse' || !first) return;
      first = null;
      const res = e.type === 'htmx:after:request' ? e.detail?.ctx?.response : null;
      failed('request failed', e.type === 'htmx:after:request' && answeredBadly(res?.status ?? 0));
      fallback('request failed');
      reopen(res && refusal(res.status) ? refusedPause(res.headers) : undefined);
    };
    live.addEventListener('htmx:after:request', requestFailed);
    live.addEventListener('htmx:error', requestFailed);

    // hx-sse pauses the stream while the tab is hidden and reconnects when it is
    // shown; neither is a failure.
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && mode === 'sse') {
        lastSignal = now();
        openedAt = now();
        if (first) first.at = now();
      }
    });

    // The watchdog.
    setInterval(() => {
      if (mode !== 'sse' || document.hidden) return;
      const t = now();
      if (first && t - first.at > CONNECT_TIMEOUT + 5000) {
        // htmx's own timeout should have ended it; do not wait for ever.
        first = null;
        failed('connect timeout', false);
        fallback('connect timeout');
        reopen();
      } else if (conn && !delivering && t - openedAt > CONNECT_TIMEOUT) {
        // A response began but no event came through: something between
        // here and the server holds the stream back. The long-poll stands
        // in at once, since the server is there.
        failed('silent stream', true);
        fallback('silent stream');
        drop();
      } else if (conn && delivering) {
        const quiet = t - lastSignal;
        if (quiet > DROP_AFTER) {
          failed('silent', false);
          drop();
        } else if (quiet > STALE_AFTER) {
          show('stale', 'no update or heartbeat for ' + Math.round(quiet / 1000) + ' s');
        }
      }
    }, 1000);

    // transport says what delivers updates now: 'sse', 'poll' (forced, or
    // standing in for the stream) or 'gone'.
    window.DashboardApp = {
      transport: () => (mode === 'sse' && poll.running() ? 'poll' : mode),
    };

    if (forced) {
      closeStream();
      poll.start({url: live.getAttribute('data-poll-url')});
      announce('poll', 'forced');
      return;
    }
    poll.status('connecting');
    first = {at: now()};
    // htmx may have connected before this script ran.
    if (live._htmx?.sse) {
      conn = live._htmx.sse;
      first = null;
      openedAt = now();
    }
  });
})();
