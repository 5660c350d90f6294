// Five changes so that BokehJS 3.9 lets go of the plots and models a page no
// longer shows. A dashboard replaces its charts on every run switch (kiosk
// mode does so on its own for each new run), and on every y-scale or x-axis
// toggle; without these, a lab screen following 40 runs had grown from 17 to
// 86 MiB of JS heap and from 7,000 to 71,000 DOM nodes, and kept growing.
//
// 1. Remove the "resize" listener each PlotView adds to window.visualViewport.
//    BokehJS adds it in connect_signals and never removes it, so the listener
//    kept every plot ever built reachable: its views, canvases, DOM and
//    models (bokeh/bokeh#15290, fixed upstream by #15298 after 3.9.2). The
//    listeners a PlotView adds to visualViewport are noted as it connects
//    its signals and removed when the view is removed.
//
// 2. Recompute the document's set of models at most RECOMPUTE_MS after a
//    change, even while changes keep coming. BokehJS waits for 30 s without
//    any change before it drops models no root references any more, and
//    restarts the wait on every change, so on a page that streams it never
//    dropped one (bokeh/bokeh#15289, fixed upstream by #15291 after 3.9.2).
//    A recompute already scheduled is now left to run.
//
// 3. Destroy a MultiChoice's choices.js widget before the view renders a new
//    one. BokehJS renders the widget again whenever its options or value
//    change from the server (the run picker: on every run switch and every
//    new run), and each choices.js instance listens on the page's <html>
//    element until destroyed, which BokehJS never does: every old picker
//    stayed reachable with its DOM. Also destroyed when the view is removed.
//
// 4. Forget a removed plot's data bounds in its DataRange1d ranges. A range
//    keeps the extent of the data of each PlotView it fits (_plot_bounds, a
//    Map keyed by the view) and never drops one, so a plot shown again (a tab
//    opened again: its views are built anew for the same ranges) kept every
//    earlier view alive, and the range kept fitting their old extents too.
//
// 5. Disconnect what a view connected to its model's signals without naming
//    itself as the receiver: each visual (a line's colour and width, an
//    axis's text...) listens to its model's properties, and a plot to its
//    toolbar's active tool, and BokehJS disconnects only what names the view.
//    A model that outlives its view (a tab shown again) kept every earlier
//    view alive through these. Connections made while a view's visuals are
//    built, or while a plot connects its signals, are noted and disconnected
//    when the view is removed.
//
// Each change is skipped, with a console warning, if the BokehJS on the page
// lacks what it replaces.
(() => {
  "use strict";
  const RECOMPUTE_MS = 30000;
  const { module, replace, skipped } = window.LabscreenPatching;

  const signaling = module("core/signaling");
  const signal = signaling && signaling.Signal && signaling.Signal.prototype;
  const views = module("core/view");
  const view = views && views.View && views.View.prototype;
  const anonymous = new WeakMap(); // View -> [Signal, slot] it connected without naming itself (change 5)
  // Runs `make` and notes, for `owner`, each connection made meanwhile without a receiver.
  const disconnecting = Boolean(signal && typeof signal.connect === "function" && typeof signal.disconnect === "function");
  if (!disconnecting) skipped("Signal.connect/disconnect");
  const noting = (owner, make) => {
    if (!disconnecting || !(view && view.remove && view.remove.__labscreen)) return make();
    const connect = signal.connect;
    const noted = anonymous.get(owner) ?? [];
    const replaced = function (slot, context = null) {
      const connected = connect.call(this, slot, context);
      if (connected && context == null) noted.push([this, slot]);
      return connected;
    };
    try {
      signal.connect = replaced;
    } catch (error) {
      return make(); // a frozen Signal: nothing can be noted
    }
    try {
      return make();
    } finally {
      if (signal.connect === replaced) signal.connect = connect; // not someone else's replacement
      if (noted.length > 0) anonymous.set(owner, noted);
    }
  };
  if (disconnecting) {
    replace(view, "remove", (remove) =>
      function (...args) {
        for (const [sender, slot] of anonymous.get(this) ?? []) sender.disconnect(slot);
        anonymous.delete(this);
        return remove.apply(this, args);
      });
  }
  const visuals = module("core/visuals");
  const Visuals = visuals && visuals.Visuals;
  if (typeof Visuals === "function" && !Visuals.__labscreen) {
    const Noted = class extends Visuals {
      constructor(owner, ...rest) {
        let made;
        noting(owner, () => { made = super(owner, ...rest); });
        return made;
      }
    };
    Noted.__labscreen = true;
    try {
      visuals.Visuals = Noted;
    } catch (error) {
      skipped("a writable core/visuals Visuals export"); // change 5 covers plots' own connections only
    }
  } else if (typeof Visuals !== "function") {
    skipped("core/visuals Visuals");
  }

  const canvas = module("models/plots/plot_canvas");
  const plot = canvas && canvas.PlotView && canvas.PlotView.prototype;
  const viewport = window.visualViewport; // none in some browsers: then BokehJS adds no listener either
  if (plot && typeof plot.connect_signals === "function" && typeof plot.remove === "function") {
    const added = new WeakMap(); // PlotView -> [type, listener, options] it added to visualViewport
    replace(plot, "connect_signals", (connect) =>
      function (...args) {
        if (!viewport) return noting(this, () => connect.apply(this, args));
        const listeners = [];
        const own = Object.getOwnPropertyDescriptor(viewport, "addEventListener"); // usually none
        const add = viewport.addEventListener;
        viewport.addEventListener = function (type, listener, options) {
          listeners.push([type, listener, options]);
          return add.call(this, type, listener, options);
        };
        try {
          return noting(this, () => connect.apply(this, args));
        } finally {
          if (own) Object.defineProperty(viewport, "addEventListener", own);
          else delete viewport.addEventListener; // the prototype's again
          if (listeners.length > 0) added.set(this, listeners);
        }
      });
    replace(plot, "remove", (remove) =>
      function (...args) {
        for (const [type, listener, options] of added.get(this) ?? []) {
          viewport.removeEventListener(type, listener, options);
        }
        added.delete(this);
        const frame = this.frame; // change 4
        for (const ranges of [frame && frame.x_ranges, frame && frame.y_ranges]) {
          for (const range of ranges instanceof Map ? ranges.values() : []) {
            if (range._plot_bounds instanceof Map) range._plot_bounds.delete(this);
          }
        }
        return remove.apply(this, args);
      });
  } else {
    skipped("PlotView.connect_signals/remove");
  }

  const multi = module("models/widgets/multi_choice");
  const picker = multi && multi.MultiChoiceView && multi.MultiChoiceView.prototype;
  const destroy = (view) => {
    const widget = view.choice_el;
    if (!widget || typeof widget.destroy !== "function") return;
    view.choice_el = undefined;
    try {
      widget.destroy();
    } catch (error) {
      setTimeout(() => { throw error; }); // reported, and the view still renders
    }
  };
  if (picker && typeof picker.render === "function" && typeof picker.remove === "function") {
    replace(picker, "render", (render) =>
      function (...args) {
        destroy(this);
        return render.apply(this, args);
      });
    replace(picker, "remove", (remove) =>
      function (...args) {
        destroy(this);
        return remove.apply(this, args);
      });
  } else {
    skipped("MultiChoiceView.render/remove");
  }

  const documents = module("document/document");
  const doc = documents && documents.Document && documents.Document.prototype;
  if (doc && typeof doc._recompute_all_models === "function") {
    replace(doc, "_schedule_recompute_all_models", (schedule) =>
      function (...args) {
        const timeout = this._recompute_timeout;
        if (!(timeout > 0) || !isFinite(timeout) || !("_recompute_timer" in this)) return schedule.apply(this, args);
        if (this._recompute_timer != null) return undefined; // one is due within RECOMPUTE_MS already
        this._recompute_timer = setTimeout(() => this._recompute_all_models(), Math.min(timeout, RECOMPUTE_MS));
        return undefined;
      });
  } else {
    skipped("Document._recompute_all_models");
  }
})();
