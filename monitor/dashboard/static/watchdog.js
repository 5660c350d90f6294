// labscreen page watchdog. BokehJS does not come back after the server goes
// away, and a half-open socket may never report itself closed. The page
// counts its connection as lost when the document fires "connection_lost",
// or when the server's heartbeat model (a hidden Div named "heartbeat",
// changed every second) has not changed for config.stall_ms of timer ticks
// that came on time, and then the server, asked at its health endpoint,
// answers and still sends no heartbeat for CONFIRM_MS more. Then it polls
// the health endpoint and reloads the page once the server answers. A late
// tick means the page was busy (a long task ran: a large patch applied, or
// charts built), and the heartbeats may be waiting behind it: the count
// starts again. Before, a page of 25 charts, busy for 5-8 s at a time, took
// itself for disconnected and reloaded three times a minute. A server too
// busy to answer its health endpoint is not taken for gone either. A page
// that is not the dashboard (the viewer-limit notice) sets config.retry_ms
// instead: it has no heartbeat and simply tries again after that long.
(function () {
  "use strict";
  var config = window.LABSCREEN || {};
  var healthz = config.healthz || "/healthz";
  var stallMs = config.stall_ms || 8000;
  var TICK_MS = 1000;
  var CONFIRM_MS = 3000;
  var lost = false;
  var lastBeat = null;
  var lastTick = Date.now();
  var quietMs = 0; // on-time ticks without a heartbeat
  var answeredAt = null; // when the server answered a probe made in this quiet spell
  var probing = false;

  function poll() {
    // A request on a pooled connection to a dead server may never answer:
    // give each probe a deadline, which also drops that connection.
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, 1500);
    fetch(healthz, { cache: "no-store", signal: controller.signal })
      .then(function (response) {
        clearTimeout(timer);
        if (response.ok) { window.location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { clearTimeout(timer); setTimeout(poll, 500); });
  }

  function onLost() {
    if (lost) { return; }
    lost = true;
    document.documentElement.setAttribute("data-connection", "lost");
    // Let a stopping server finish closing before asking whether it is back.
    setTimeout(poll, 1000);
  }

  function probe() {
    // Is the server up and free to answer? Then a live connection would deliver a heartbeat soon.
    if (probing) { return; }
    probing = true;
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, 1500);
    fetch(healthz, { cache: "no-store", signal: controller.signal })
      .then(function (response) {
        if (response.ok && answeredAt === null && quietMs > 0) { answeredAt = Date.now(); }
      })
      .catch(function () { /* down or busy: the next tick asks again */ })
      .then(function () { clearTimeout(timer); probing = false; });
  }

  function watchHeartbeat(doc) {
    var now = Date.now();
    var elapsed = now - lastTick;
    lastTick = now;
    // A hidden tab's timers are throttled (to once a minute after five minutes), not held up by work:
    // there every tick is late, and the time between them counts as it passes.
    var busy = elapsed > 2 * TICK_MS && !document.hidden;
    var beat = doc.get_model_by_name("heartbeat");
    var text = beat ? beat.text : null;
    if (text !== lastBeat || busy) { // a beat, or a busy page whose beats may wait behind this tick
      lastBeat = text;
      quietMs = 0;
      answeredAt = null;
    } else {
      quietMs += document.hidden ? elapsed : TICK_MS;
    }
    if (quietMs >= stallMs) {
      if (answeredAt === null) {
        probe();
      } else if (now - answeredAt >= CONFIRM_MS) {
        onLost(); // the server answers others, and has sent this page nothing since: its socket is dead
        return;
      }
    }
    if (!lost) { setTimeout(function () { watchHeartbeat(doc); }, TICK_MS); }
  }

  function attach() {
    if (config.retry_ms) {
      document.documentElement.setAttribute("data-connection", "retry");
      setTimeout(onLost, config.retry_ms);
      return;
    }
    var docs = window.Bokeh && window.Bokeh.documents;
    if (docs && docs.length) {
      docs[0].on_event("connection_lost", onLost);
      document.documentElement.setAttribute("data-connection", "open");
      lastTick = Date.now();
      watchHeartbeat(docs[0]);
    } else {
      setTimeout(attach, 100);
    }
  }

  attach();
})();
