// app.js keeps a live dashboard on its SSE stream (htmx 4 + hx-sse) and falls
// back to the long-poll in poll.js (window.DashboardPoll) when the stream
// fails or goes quiet, trying the stream again after five minutes of polling.
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
//        data-poll-url="/d/{slug}/poll" data-version="V" data-transport="sse|poll">
//   <span id="status" data-state="..."> and <time id="data-age">
//
// How the stream is closed: removing the hx-sse:connect attribute and calling
// htmx.process(live, true) makes htmx tear the element down, which runs
// hx-sse's htmx_before_cleanup hook: it cancels the stream reader, aborts the
// fetch, cancels a pending reconnect delay and fires htmx:sse:close. hx-sse's
// loop would still try to reconnect (the element is still in the page), so
// while polling this script cancels htmx:sse:before:connection, which ends the
// loop, and aborts any connection that completes anyway.
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

  const CONNECT_TIMEOUT = 10_000; // ms to wait for a (re)connection
  const MAX_ERRORS = 3; // consecutive errors without a connection
  const SILENCE = 45_000; // ms without a message or heartbeat (heartbeats every 15 s)
  const POLL_PERIOD = 5 * 60_000; // ms of polling before trying the stream again
  const ATTRS = ['hx-sse:connect', 'data-hx-sse:connect'];

  const connectAttr = ATTRS.find((a) => live.hasAttribute(a)) || ATTRS[0];
  const connectURL = live.getAttribute(connectAttr) || '';
  const forced = live.getAttribute('data-transport') === 'poll' || !connectURL;

  let mode = 'sse'; // 'sse' while the stream is (to be) used, 'poll' otherwise
  let connected = false;
  let errors = 0;
  let deadline = Date.now() + CONNECT_TIMEOUT; // when !connected, give up at
  let lastSignal = Date.now(); // last connection, message or heartbeat
  let pollSince = 0;

  const isLive = (e) => e.target === live;

  function announce(transport, reason) {
    live.dispatchEvent(new CustomEvent('dashboard:transport', {detail: {transport, reason}}));
  }

  // closeStream stops hx-sse on #live for good (see the header comment).
  function closeStream() {
    // A request that has not turned into a stream yet sits in #live's htmx
    // request queue; htmx:abort aborts it so it cannot block the next one.
    live.dispatchEvent(new CustomEvent('htmx:abort'));
    for (const a of ATTRS) live.removeAttribute(a);
    htmx.process(live, true); // cleanup -> hx-sse htmx_before_cleanup -> cleanup()
  }

  function toPoll(reason) {
    if (mode !== 'sse') return;
    mode = 'poll';
    connected = false;
    pollSince = Date.now();
    closeStream();
    poll.start({url: live.getAttribute('data-poll-url')});
    announce('poll', reason);
  }

  function toStream() {
    if (mode !== 'poll' || forced) return;
    const u = new URL(connectURL, location.href);
    const v = poll.version();
    if (v) u.searchParams.set('lastEventId', v);
    mode = 'sse';
    connected = false;
    errors = 0;
    deadline = Date.now() + CONNECT_TIMEOUT;
    live.setAttribute(connectAttr, u.pathname + u.search);
    // The poller keeps running until the stream is confirmed, so a failed
    // attempt leaves no gap; htmx:sse:after:connection stops it.
    htmx.process(live, true);
    announce('sse', 'retry');
  }

  // hx-sse's reconnect delay for this attempt, at its jittered maximum.
  function reconnectDelay(conn) {
    const cfg = conn?.config || {};
    const base = htmx.parseInterval(cfg.reconnectDelay) ?? 500;
    const max = htmx.parseInterval(cfg.reconnectMaxDelay) ?? 60_000;
    const d = Math.min(base * 2 ** Math.max(0, (conn?.attempt || 1) - 1), max);
    return d * (1 + (cfg.reconnectJitter ?? 0.3));
  }

  live.addEventListener('htmx:sse:before:connection', (e) => {
    if (!isLive(e)) return;
    const conn = e.detail?.connection;
    if (mode !== 'sse') {
      // Cancelling a reconnect ends hx-sse's loop. The first connection
      // (attempt 0) is not cancelled here: hx-sse would then never release
      // the htmx request; it is aborted in after:connection instead.
      if (conn && conn.attempt > 0) e.preventDefault();
      return;
    }
    if (conn && conn.attempt > 0) {
      connected = false;
      deadline = Date.now() + reconnectDelay(conn) + CONNECT_TIMEOUT;
      poll.status('reconnecting');
    }
  });

  live.addEventListener('htmx:sse:after:connection', (e) => {
    if (!isLive(e)) return;
    if (mode !== 'sse') {
      e.detail?.connection?.abortController?.abort();
      return;
    }
    connected = true;
    errors = 0;
    lastSignal = Date.now();
    if (poll.running()) poll.stop();
    poll.status('live');
    poll.touch();
  });

  live.addEventListener('htmx:sse:before:message', (e) => {
    if (isLive(e) && mode !== 'sse') e.preventDefault();
  });

  live.addEventListener('htmx:sse:after:message', (e) => {
    if (!isLive(e) || mode !== 'sse') return;
    const id = e.detail?.message?.id;
    if (id) poll.setVersion(id);
    poll.syncTitle();
    connected = true;
    lastSignal = Date.now();
    poll.status('live');
    poll.touch();
  });

  // The server's heartbeat is a named SSE event ("event: heartbeat"), which
  // hx-sse dispatches as a DOM event on #live; comments never surface.
  live.addEventListener('heartbeat', () => {
    if (mode !== 'sse') return;
    lastSignal = Date.now();
    poll.touch();
  });

  // The dashboard was deleted ("event: gone"): say so and stop, rather than
  // reconnect to an address that now answers 404.
  live.addEventListener('gone', () => {
    if (mode !== 'sse') return;
    mode = 'gone';
    closeStream();
    poll.gone();
    announce('none', 'gone');
  });

  live.addEventListener('htmx:sse:error', (e) => {
    if (!isLive(e) || mode !== 'sse') return;
    connected = false;
    errors++;
    poll.status('reconnecting');
    if (errors >= MAX_ERRORS) toPoll('errors');
  });

  // hx-sse fires close when its loop ends for good; it will not reconnect.
  live.addEventListener('htmx:sse:close', (e) => {
    if (!isLive(e) || mode !== 'sse') return;
    toPoll('closed');
  });

  // The events endpoint answered without becoming a stream (an error status,
  // a login page, a network failure): hx-sse never retries that first
  // request, so do not wait for the watchdog.
  const requestFailed = (e) => {
    if (isLive(e) && mode === 'sse' && !connected) toPoll('request failed');
  };
  live.addEventListener('htmx:after:request', requestFailed);
  live.addEventListener('htmx:error', requestFailed);

  // hx-sse pauses the stream while the tab is hidden and reconnects when it is
  // shown; neither is a failure.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && mode === 'sse') {
      lastSignal = Date.now();
      if (!connected) deadline = Date.now() + CONNECT_TIMEOUT;
    }
  });

  // The watchdog.
  setInterval(() => {
    if (poll.isGone()) return;
    const now = Date.now();
    if (mode === 'sse') {
      if (document.hidden) return;
      if (!connected && now > deadline) toPoll('connect timeout');
      else if (connected && now - lastSignal > SILENCE) toPoll('silent');
    } else if (!forced && now - pollSince >= POLL_PERIOD) {
      toStream();
    }
  }, 1000);

  window.DashboardApp = {transport: () => mode, toPoll, toStream};

  if (forced) {
    toPoll('forced');
    return;
  }
  // htmx may have connected before this script ran.
  if (live._htmx?.sse?.status != null) {
    connected = true;
    lastSignal = Date.now();
    poll.status('live');
  }
});
