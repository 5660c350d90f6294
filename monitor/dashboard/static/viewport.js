// labscreen lab-screen shape. The server lays the lab screen's charts out
// without knowing the window: this tells it. On a kiosk page (config.kiosk)
// it writes "portrait" or "landscape" into the hidden Div named "viewport"
// once the document is there and whenever the window is resized; BokehJS
// sends the change to the server, which puts the charts in one column on a
// portrait screen.
(function () {
  "use strict";
  var config = window.LABSCREEN || {};
  if (!config.kiosk) { return; }

  function report() {
    var docs = window.Bokeh && window.Bokeh.documents;
    var model = docs && docs.length ? docs[0].get_model_by_name("viewport") : null;
    if (!model) { return false; }
    var shape = window.innerHeight > window.innerWidth ? "portrait" : "landscape";
    if (model.text !== shape) { model.text = shape; }
    return true;
  }

  function attach(tries) {
    // Until the document is there; a page without the model (the viewer-limit notice) gives up.
    if (!report() && tries > 0) { setTimeout(function () { attach(tries - 1); }, 100); }
  }

  attach(600);
  window.addEventListener("resize", report);
})();
