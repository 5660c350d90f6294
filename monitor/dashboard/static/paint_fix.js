// Twelve changes to how BokehJS 3.9 paints, for pages that stream into many plots.
//
// 1. Skip rewriting an inline stylesheet with the text it already holds.
//    BokehJS rewrites each renderer's "position" stylesheet on every paint,
//    even when the position has not changed, and the very next step of the
//    paint reads CSS custom properties through getComputedStyle. Each rewrite
//    invalidated the page's styles, so every renderer of every repainted
//    chart forced a style recalculation (about 145 a second, a fifth of the
//    page's time at 1,000 points/s).
//
// 2. Move a line's element, and read a plot's font size, at most once a
//    second; never look for "--bk-..." overrides. Each paint moves each
//    line's (empty, invisible) element to the line's new extent, which
//    invalidates the page's styles, and every visual value BokehJS reads next
//    (a label's colour, a line's width...) first looks for a "--bk-..."
//    override with getComputedStyle, as does measuring axis labels for the
//    plot's font size. So every plot's paint recomputed the page's styles: a
//    quarter of the page's time at 1,000 points/s. Neither BokehJS's
//    stylesheets nor the dashboard's set such an override (a browser test
//    checks every element of the page), so none is looked for: opening a run
//    made about 1,600 such reads, 45 ms of style work. The font sizes are set
//    only at load, and refreshed after STYLE_MS.
//
// 3. Paint plots a few per frame, not all in one. Each plot schedules its own
//    paint on the next animation frame, so with ten live charts one frame
//    painted all ten (over 100 ms here) while arriving updates waited behind
//    it. Plots waiting to paint are now painted in the order they asked, in
//    frames of about PAINT_BUDGET_MS each (at least one plot per frame), and
//    updates are applied between frames. A plot asked to paint twice before
//    its turn paints once, with the latest data.
//
// 4. Keep a plot's automatic range to the page. Each time BokehJS fits a
//    DataRange1d to the data it sets the range's start and end, and by
//    default sends both to the server: at 1,000 points/s about 200 messages
//    a second that the page encoded and the server decoded and applied, for
//    values the server never reads. A range the user pans or zooms is still
//    sent.
//
// 5. Sort a glyph's spatial index when it is first searched, not whenever its
//    data changes. BokehJS rebuilds the index of a renderer's points on
//    every stream and sorts it (a Hilbert sort of up to ROLLOVER points)
//    for hit tests that, for a line, only a hover or a selection ever makes;
//    a range fit reads the index's bounding box, which is known without the
//    sort. Opening a tab of ten charts sorted twenty indexes (a tenth of
//    the page's time), and at 1,000 points/s every flush sorted them again.
//
// 6. Bring a renderer's glyphs up to date with its data source when its plot
//    paints, not whenever the source changes. BokehJS re-derives every glyph
//    view of a renderer (five per line) and its index for each stream, and
//    again when the source's view recomputes its indices: twice per chart per
//    flush, inside the handling of the websocket message, so the next
//    message waited behind it. A plot painted once after several flushes now
//    re-derives its glyphs once. Until then the page's ColumnDataSources hold
//    the new points and the canvas the old ones.
//
// 7. Redraw a DataTable's rows when its source is patched or streamed. The
//    table redraws when its source's view recomputes different indices, so
//    a patch that changes values but not the number of rows (the runs
//    table: a run's status, duration, last step) reached the page's source
//    but not the rows on screen until the table was rendered again.
//
// 8. Never warn "could not set initial ranges". BokehJS warns on every
//    paint of a plot whose automatic ranges have nothing to fit, and on this
//    dashboard that is the normal state of a chart until its first point (a
//    run without an embedding, a tensor without update ratios): a few
//    hundred warnings a session buried anything worth reading in the
//    console. A plot whose ranges fail for another reason goes unflagged too.
//
// 9. Lay a root out once for many changes, not once for each. BokehJS lays
//    out the whole root a view is in (every view's size and style read from
//    the DOM) synchronously whenever the content of a layout changes: a
//    Div's text, a plot's renderers, a layout's children. Adding a run to a
//    comparison of 25 charts changes each chart's legend and lines, and laid
//    the tab of charts out about 50 times (8.8 s of 13 s). Such layouts are
//    now made once, when no change has come for LAYOUT_QUIET_MS (a run of
//    changes comes as many messages), at most LAYOUT_MAX_MS after the first
//    change; the plots then paint with the new sizes. A layout for new
//    children (a tab opened, charts added), one a plot asks for while it
//    paints, and the page's first are still made at once: a new plot paints
//    nothing until it is laid out.
//
// 10. Refit a plot's automatic ranges when its renderers change (a run dropped).
//
// 11. Take a plot's canvas layer that holds nothing out of the page. Each plot draws
//     on two canvases: its picture, and an overlay layer for what tools draw
//     over it (a box-zoom rectangle), empty the rest of the time. Headless
//     Chromium hands every canvas of the page to its compositor in every
//     frame, changed or not, so ten charts' empty overlays were half of that
//     work (about 2.5 ms of each frame's 11 ms at 1,000 points/s, 40 frames a
//     second). A layer that was cleared and then drawn on by nothing until
//     its paint finished is hidden (display: none); its first drawing call
//     shows it again. Only plots' own layers: a legend entry's glyph is a
//     layer too, but in the flow of its row, where an empty one keeps its place.
//
// 12. Give a plot its toolbar after its first paint. Building a toolbar (a
//     button per tool, each an element with its own styles) was about a
//     tenth of the time to open a run of ten charts. The server makes the
//     dashboard's plots without one, tagged "toolbar-after-paint:<location>"
//     (monitor.dashboard.theme.Look.toolbar); once such a plot has painted,
//     its toolbar is put there when the page is next idle (at most
//     TOOLBAR_WAIT_MS later), for the page alone: the server keeps none,
//     which changes nothing it draws. The toolbar sits inside the plot and
//     shows while the pointer is over it, so its coming moves nothing. If
//     this change is skipped, the dashboard's plots have no toolbar.
//
// Each change is skipped if the BokehJS on the page lacks what it replaces.
(() => {
  "use strict";
  const PAINT_BUDGET_MS = 8;
  const REST_PER_PAINT = 2;
  const STYLE_MS = 1000;
  const LAYOUT_QUIET_MS = 30;
  const LAYOUT_MAX_MS = 300;
  const TOOLBAR_WAIT_MS = 2000;
  const { module, replace, skipped } = window.LabscreenPatching;

  const dom = module("core/dom");
  replace(dom && dom.InlineStyleSheet && dom.InlineStyleSheet.prototype, "_update", (update) =>
    function (css) {
      if (this.el && this.el.textContent === css) return;
      update.call(this, css);
    });

  const visual = module("core/visuals/visual");
  const remembered = new WeakMap(); // Element -> Map<property, [read at, value]>
  const recall = (el, key, read) => {
    const now = performance.now();
    let values = remembered.get(el);
    if (values === undefined) remembered.set(el, values = new Map());
    const known = values.get(key);
    if (known !== undefined && now - known[0] < STYLE_MS) return known[1];
    const value = read();
    values.set(key, [now, value]);
    return value;
  };
  replace(visual && visual.VisualProperties && visual.VisualProperties.prototype, "_get_css_value", () =>
    function () {
      return ""; // no override set: BokehJS then uses the model's value
    });

  const canvas = module("models/plots/plot_canvas");
  // Unlike BokehJS's own scheduling, a paint is not chained into the view's `ready` promise. Each link
  // of the root view's `ready` chain waits for the latest paint asked of its plot, and with a steady
  // stream one always is: the chain grew for as long as data came (the JS heap by 0.5 MiB every few
  // seconds at 10,000 points/s, let go only when the stream stopped). Only GridPlot awaits `ready`.
  const waiting = new Set(); // PlotViews asking to paint, in the order they first asked
  let frame = 0;
  let rest = 0;
  const request = () => { rest = 0; frame = requestAnimationFrame(paint_some); };
  const stale = new WeakMap(); // PlotView -> its GlyphRendererViews whose glyphs lag their source (change 6)
  const rethrow = (error) => setTimeout(() => { throw error; });
  const bring_up_to_date = async (plot, renderers) => {
    for (const renderer of renderers) {
      if (renderer.is_destroyed) continue;
      try {
        await renderer.set_data();
        // A paint BokehJS made directly (after a layout) since the stream drew the old glyphs and
        // cleared what the stream invalidated: without this the plot's layer would not be redrawn.
        plot.invalidate_painters(renderer);
      } catch (error) {
        rethrow(error); // as BokehJS's own update would; the plot's other lines still go on
      }
    }
  };
  const refresh = (plot) => { // resolves once the plot's lines are up to date, or the task is over
    const renderers = stale.get(plot);
    if (renderers === undefined) return undefined;
    stale.delete(plot);
    const done = bring_up_to_date(plot, renderers).then(() => true);
    // The dashboard's glyphs take only microtasks, so this frame; one that waits longer (an image
    // to load) must not hold the paint loop: the plot paints now and again once it is done.
    const later = new Promise((resolve) => setTimeout(() => resolve(false)));
    return Promise.race([done, later]).then((in_time) => {
      if (!in_time) done.then(() => { if (!plot.is_destroyed) plot.request_paint(); });
    });
  };
  // Change 12: plots tagged "toolbar-after-paint:<location>" get their toolbar there once they have
  // painted, all of them in one idle moment of the page. A plot whose toolbar is taken away again (the
  // server sent the plot whole) gets it again after its next paint.
  const TOOLBAR_TAG = "toolbar-after-paint:";
  const when_idle = window.requestIdleCallback
    ? (fn) => requestIdleCallback(fn, { timeout: TOOLBAR_WAIT_MS })
    : (fn) => setTimeout(fn, 0);
  const toolbars_due = new Map(); // Plot model -> where its toolbar goes
  const give_toolbars = () => {
    const due = Array.from(toolbars_due);
    toolbars_due.clear();
    for (const [model, where] of due) {
      try {
        if (model.toolbar_location == null) model.setv({ toolbar_location: where }, { sync: false });
      } catch (error) {
        rethrow(error); // the other plots still get theirs
      }
    }
  };
  const toolbar_after_paint = (view) => {
    const model = view.model;
    if (model.toolbar_location != null || toolbars_due.has(model) || !Array.isArray(model.tags)) return;
    const tag = model.tags.find((t) => typeof t === "string" && t.startsWith(TOOLBAR_TAG));
    if (tag === undefined) return;
    toolbars_due.set(model, tag.slice(TOOLBAR_TAG.length));
    if (toolbars_due.size === 1) when_idle(give_toolbars);
  };
  const paint_some = async () => {
    // frame stays set while painting: a plot asking to paint meanwhile (a range fit does) waits its turn
    const start = performance.now();
    try {
      for (const view of Array.from(waiting)) { // asked during this frame: the next frame
        waiting.delete(view);
        try {
          await refresh(view);
          if (!view.is_destroyed) view.repaint();
        } catch (error) {
          rethrow(error);
        }
        if (performance.now() - start >= PAINT_BUDGET_MS) break;
      }
    } finally {
      const spent = performance.now() - start;
      frame = 0;
      if (waiting.size > 0) rest = setTimeout(request, spent * REST_PER_PAINT);
    }
  };
  replace(canvas && canvas.PlotView && canvas.PlotView.prototype, "schedule_paint", () =>
    function () {
      if (this.is_paused) return;
      waiting.add(this); // a plot already waiting keeps its place
      if (frame === 0 && rest === 0) request();
    });

  const plot = canvas && canvas.PlotView && canvas.PlotView.prototype;
  replace(plot, "paint", (paint) =>
    function (...args) {
      const result = paint.apply(this, args);
      try {
        toolbar_after_paint(this);
      } catch (error) {
        rethrow(error); // never in the way of what BokehJS does after a paint
      }
      return result;
    });
  const font_size = plot && Object.getOwnPropertyDescriptor(plot, "base_font_size");
  if (font_size && typeof font_size.get === "function" && !font_size.get.__labscreen) {
    const read = font_size.get;
    const get = function () {
      return this.el ? recall(this.el, "font-size", () => read.call(this)) : read.call(this);
    };
    get.__labscreen = true;
    Object.defineProperty(plot, "base_font_size", { ...font_size, get });
  } else if (!font_size || typeof font_size.get !== "function") {
    skipped("PlotView.base_font_size");
  }

  const glyphs = module("models/renderers/glyph_renderer");
  const renderer = glyphs && glyphs.GlyphRendererView && glyphs.GlyphRendererView.prototype;
  const scheduled = canvas && canvas.PlotView && canvas.PlotView.prototype.schedule_paint.__labscreen;
  if (scheduled && renderer && typeof renderer.set_data === "function") {
    replace(renderer, "update_data", () =>
      async function () { // a patch's indices too: BokehJS re-derives the whole glyph either way
        const plot = this.plot_view;
        let renderers = stale.get(plot);
        if (renderers === undefined) stale.set(plot, renderers = new Set());
        renderers.add(this);
        this.request_paint();
      });
  } else {
    skipped("GlyphRendererView.set_data (or the paint scheduling above)");
  }
  const moved = new WeakMap(); // GlyphRendererView -> when its element was last moved
  const trailing = new WeakSet(); // views with a catch-up move planned
  replace(glyphs && glyphs.GlyphRendererView && glyphs.GlyphRendererView.prototype, "update_position", (update) =>
    function () {
      const now = performance.now();
      const last = moved.get(this);
      if (last !== undefined && now - last < STYLE_MS) {
        if (!trailing.has(this)) { // a chart that stops repainting still ends up where it was last drawn
          trailing.add(this);
          setTimeout(() => {
            trailing.delete(this);
            if (this.is_destroyed) return;
            moved.set(this, performance.now());
            update.call(this);
          }, STYLE_MS - (now - last));
        }
        return;
      }
      moved.set(this, now);
      update.call(this);
    });

  const ranges = module("models/ranges/data_range1d");
  const range = ranges && ranges.DataRange1d && ranges.DataRange1d.prototype;
  let fitting = false;
  replace(range, "update", (update) =>
    function (...args) {
      fitting = true;
      try {
        return update.apply(this, args);
      } finally {
        fitting = false;
      }
    });
  replace(range, "setv", (setv) =>
    function (attrs, options = {}) {
      return setv.call(this, attrs, fitting ? { ...options, sync: false } : options);
    });

  const spatial = module("core/util/spatial");
  const index = spatial && spatial.SpatialIndex && spatial.SpatialIndex.prototype;
  if (index && ["finish", "indices", "bounds"].every((name) => typeof index[name] === "function")) {
    const unsorted = new WeakSet(); // indexes whose sort is put off
    let sort = null;
    replace(index, "finish", (finish) => {
      sort = finish;
      return function () { unsorted.add(this); };
    });
    const sorted = (search) =>
      function (...args) {
        if (unsorted.has(this)) {
          sort.call(this);
          unsorted.delete(this); // not before: if the sort throws, the next search sorts again
        }
        return search.apply(this, args);
      };
    replace(index, "indices", sorted);
    replace(index, "bounds", sorted);
  } else {
    skipped("SpatialIndex.finish/indices/bounds");
  }

  const tables = module("models/widgets/tables/data_table");
  const table = tables && tables.DataTableView && tables.DataTableView.prototype;
  if (table && typeof table.updateGrid === "function") {
    replace(table, "connect_signals", (connect) =>
      function (...args) {
        const connected = connect.apply(this, args);
        const { source } = this.model;
        for (const signal of [source.patching, source.streaming]) {
          if (signal) this.connect(signal, () => this.updateGrid());
        }
        return connected;
      });
  } else {
    skipped("DataTableView.updateGrid");
  }

  const layouts = module("models/layouts/layout_dom");
  const layout_view = layouts && layouts.LayoutDOMView && layouts.LayoutDOMView.prototype;
  if (layout_view && ["rerender", "invalidate_layout", "compute_layout", "update_layout", "update_children"].every(
    (name) => typeof layout_view[name] === "function")) {
    let deferring = 0; // inside a change that lays the page out (rerender, invalidate_layout)
    let immediate = 0; // inside a layout that must be made now (new children)
    const due = new Map(); // root view -> whether its layouts must be updated first
    const new_children = new WeakSet(); // layouts whose children are being replaced
    let timer = 0;
    let since = 0; // when the oldest change waiting for the layout was made
    let compute_original = null;
    const lay_out = () => {
      timer = 0;
      since = 0;
      const roots = Array.from(due);
      due.clear();
      for (const [root, update] of roots) {
        if (root.is_destroyed) continue;
        try {
          if (update) root.update_layout();
          compute_original.call(root);
        } catch (error) {
          rethrow(error);
        }
      }
    };
    const later = (root, update) => {
      due.set(root, due.get(root) || update);
      const now = performance.now();
      if (since === 0) since = now;
      clearTimeout(timer); // changes still coming (one message each): wait for the quiet after them
      timer = setTimeout(lay_out, now - since >= LAYOUT_MAX_MS ? 0 : LAYOUT_QUIET_MS);
    };
    const is_root = (view) => !(view.parent instanceof layouts.LayoutDOMView);
    replace(layout_view, "compute_layout", (compute) => {
      compute_original = compute;
      return function () {
        if (deferring > 0 && immediate === 0 && is_root(this) && this._layout_computed) {
          later(this, false);
          return;
        }
        if (due.has(this)) { // made now with a layout still waiting: it is this one
          const update = due.get(this);
          due.delete(this);
          if (update) this.update_layout(); // views built since (a new plot has no layout before this)
        }
        compute.call(this);
      };
    });
    replace(layout_view, "update_children", (update) =>
      async function (...args) {
        new_children.add(this);
        try {
          return await update.apply(this, args);
        } finally {
          new_children.delete(this);
        }
      });
    replace(layout_view, "invalidate_layout", (invalidate) =>
      function () {
        if (immediate > 0 || new_children.has(this)) { // new views: a new plot paints nothing until laid out
          immediate += 1;
          try {
            invalidate.call(this);
          } finally {
            immediate -= 1;
          }
          return;
        }
        if (is_root(this) && this._layout_computed && compute_original !== null) {
          later(this, true);
          return;
        }
        deferring += 1;
        try {
          invalidate.call(this);
        } finally {
          deferring -= 1;
        }
      });
    replace(layout_view, "rerender", (rerender) =>
      function () {
        deferring += 1;
        try {
          rerender.call(this);
        } finally {
          deferring -= 1;
        }
      });
  } else {
    skipped("LayoutDOMView.rerender/invalidate_layout/compute_layout/update_layout/update_children");
  }

  // 10. Fit a plot's automatic ranges again when its renderers change. BokehJS refits them when a
  //     glyph's data changes, not when a line is removed: dropping a run from a comparison left its
  //     charts scaled to the dropped run's values (a diverged run's 1e3 over the kept run's 0.5).
  replace(plot, "_update_renderers", (update) =>
    async function (...args) {
      const updated = await update.apply(this, args);
      this.invalidate_dataranges = true;
      this.request_repaint();
      return updated;
    });

  const layers = module("core/util/canvas");
  const layer = layers && layers.CanvasLayer && layers.CanvasLayer.prototype;
  const canvases = module("models/canvas/canvas");
  const canvas_view = canvases && canvases.CanvasView && canvases.CanvasView.prototype;
  if (layer && canvas_view && ["clear", "finish"].every((name) => typeof layer[name] === "function") &&
      typeof canvas_view.initialize === "function") {
    const DRAWING = ["fill", "stroke", "fillRect", "strokeRect", "fillText", "strokeText", "drawImage", "putImageData"];
    // Only a plot's own two layers, absolutely placed over each other: hiding one moves nothing. A legend
    // entry's glyph is a layer too, in the flow of its row, and an empty one (a source with no data
    // yet) must keep its place.
    const plot_layers = new WeakSet();
    const drawn = new WeakMap(); // a plot layer's 2D context -> whether anything was drawn since it was cleared
    const watch = (ctx) => {
      for (const name of DRAWING) {
        const draw = ctx[name];
        ctx[name] = function (...args) {
          if (drawn.get(this) === false) {
            drawn.set(this, true);
            if (this.canvas.style.display === "none") this.canvas.style.display = "";
          }
          return draw.apply(this, args);
        };
      }
    };
    const is_canvas = (ctx) => typeof CanvasRenderingContext2D !== "undefined" && ctx instanceof CanvasRenderingContext2D;
    replace(canvas_view, "initialize", (initialize) =>
      function (...args) {
        const result = initialize.apply(this, args);
        for (const own of [this.primary, this.overlays]) if (own) plot_layers.add(own);
        return result;
      });
    replace(layer, "clear", (clear) =>
      function (...args) {
        const { ctx } = this;
        if (plot_layers.has(this) && is_canvas(ctx)) {
          if (!drawn.has(ctx)) watch(ctx);
          drawn.set(ctx, false);
        }
        return clear.apply(this, args);
      });
    replace(layer, "finish", (finish) =>
      function (...args) {
        const result = finish.apply(this, args);
        const { ctx } = this;
        if (plot_layers.has(this) && is_canvas(ctx) && drawn.get(ctx) === false) ctx.canvas.style.display = "none";
        return result;
      });
  } else {
    skipped("CanvasLayer.clear/finish, CanvasView.initialize");
  }

  const manager = module("models/plots/range_manager");
  replace(manager && manager.RangeManager && manager.RangeManager.prototype, "compute_initial", (compute) =>
    function (...args) {
      this.warn_initial_ranges = false;
      return compute.apply(this, args);
    });
})();
