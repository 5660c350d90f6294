// labscreen page watchdog. BokehJS does not come back after the server goes
// away, and a half-open socket may never report itself closed. The page
// counts its connection as lost when the document fires "connection_lost"
// or when the server's heartbeat model (a hidden Div named "heartbeat",
// changed every second) has not changed for config.stall_ms. Then it polls
// the health endpoint and reloads the page once the server answers. A page
// that is not the dashboard (the viewer-limit notice) sets config.retry_ms
// instead: it has no heartbeat and simply tries again after that long.
(function () {
  "use strict";
  var config = window.LABSCREEN || {};
  var healthz = config.healthz || "/healthz";
  var stallMs = config.stall_ms || 8000;
  var lost = false;
  var lastBeat = null;
  var lastChange = Date.now();

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

  function watchHeartbeat(doc) {
    var beat = doc.get_model_by_name("heartbeat");
    var text = beat ? beat.text : null;
    if (text !== lastBeat) { lastBeat = text; lastChange = Date.now(); }
    if (Date.now() - lastChange > stallMs) { onLost(); } else if (!lost) { setTimeout(function () { watchHeartbeat(doc); }, 1000); }
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
      lastChange = Date.now();
      watchHeartbeat(docs[0]);
    } else {
      setTimeout(attach, 100);
    }
  }

  attach();
})();
