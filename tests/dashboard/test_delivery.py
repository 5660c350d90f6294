"""How flushes reach the page: one message per flush (``patches``), paced by the page's answers (``pacing``).

The page's websocket is watched from an init script: every ``PATCH-DOC``
content frame that arrives is parsed and its events counted by kind. The
page's answers are read on the server, from each session's ``Flow`` model.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from typing import cast

import pytest
from bokeh.protocol import Protocol

from monitor.dashboard.pacing import Flow
from producers.client import Monitor
from tests.dashboard.conftest import Viewer
from tests.dashboard.test_app import wait_until
from tests.serving import ServerThread

pytestmark = pytest.mark.browser
SERIES = [f"metric_{i}" for i in range(10)]
WATCH_JS = """(() => {
  window.__streams_per_message = [];
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const socket = new Native(...args);
    socket.addEventListener('message', (event) => {
      if (typeof event.data !== 'string' || !event.data.includes('"events"')) return;
      try {
        const content = JSON.parse(event.data);
        if (!Array.isArray(content.events)) return;
        window.__streams_per_message.push(content.events.filter((e) => e.kind === 'ColumnsStreamed').length);
      } catch (error) { /* a frame that is not JSON content */ }
    });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, Native);
})();"""


def test_one_flush_of_ten_series_arrives_as_one_message_in_order(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("batched")
    monitor.log(dict.fromkeys(SERIES, 0.0), step=0)
    viewer = viewers(server.url + "/?run=batched", init_scripts=(WATCH_JS,))
    for name in SERIES:
        viewer.wait_column_length(f"scalars:batched:{name}", "step", 1)
    before = len(viewer.page.evaluate("() => window.__streams_per_message"))

    monitor.log({name: float(i) for i, name in enumerate(SERIES)}, step=1)
    for i, name in enumerate(SERIES):
        assert viewer.wait_column_length(f"scalars:batched:{name}", "value", 2) == [0.0, float(i)]
    counts = viewer.page.evaluate("() => window.__streams_per_message")[before:]
    # Bokeh alone sends each stream as its own message; batched, the ten streams travel together.
    assert len(SERIES) in counts, f"streams per message after the step: {counts}"


def test_the_page_socket_sends_each_frame_at_once(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Nagle's algorithm is off on the page's websocket, so a flush's later frames do not wait for an ACK.

    Tornado turns it back on when the websocket handshake (an HTTP exchange) ends; left on, the page
    got a flush 15 ms later at the median at 1,000 points/s (``scripts/bench_latency.py``).
    """
    monitors("nodelay").log({"loss": 1.0}, step=0)
    viewers(server.url + "/?run=nodelay").wait_column_length("scalars:nodelay:loss", "step", 1)

    def nodelay() -> list[int]:
        sockets = [
            connection._socket.ws_connection.stream.socket for connection in server.running._viewer_connections()
        ]
        return [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets]

    assert server.call(nodelay) == [1]


def test_a_page_gone_before_its_connection_opens_is_let_go(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Bokeh opens a page's connection once it has built the session; a page closed meanwhile is let go.

    Its close was handled with no connection yet, so Bokeh alone would keep the one it opens next, and
    the session with it, for good. Replayed on a real handler whose page has closed.
    """
    monitors("gone").log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=gone")
    viewer.wait_column_length("scalars:gone:loss", "step", 1)
    handler = server.call(lambda: server.running._viewer_connections()[0]._socket)
    session = server.call(lambda: server.running._bokeh.get_sessions("/")[0])
    viewer.page.close()
    wait_until(lambda: server.call(lambda: handler.ws_connection is None), what="the page's close on the server")

    def open_late() -> tuple[bool, bool]:
        tornado = server.running._bokeh._tornado
        connection = tornado.new_connection(Protocol(), handler, tornado._applications["/"], session)
        return connection in tornado._clients, connection in session._subscribed_connections

    assert server.call(open_late) == (False, False)


def flows(server: ServerThread) -> list[tuple[int, int]]:
    """(flushes sent, flushes the page said it painted) of every dashboard session, read on the server."""

    def read() -> list[tuple[int, int]]:
        sessions = server.running._bokeh.get_sessions("/") if server.running._bokeh is not None else []
        roots = [root for session in sessions for root in session.document.roots]
        return [(cast(int, root.sent), cast(int, root.painted)) for root in roots if isinstance(root, Flow)]

    return server.call(read)


def test_the_page_answers_each_flush_it_has_painted(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("paced")
    monitor.log({"loss": 0.0}, step=0)
    viewer = viewers(server.url + "/?run=paced")
    viewer.wait_column_length("scalars:paced:loss", "step", 1)
    for step in range(1, 8):  # one flush each: the next is logged once the page has the last
        monitor.log({"loss": float(step)}, step=step)
        viewer.wait_column_length("scalars:paced:loss", "step", step + 1)
    [(sent, _)] = flows(server)
    assert sent >= 7  # the first point came with the history, not in a flush
    wait_until(lambda: flows(server)[0][1] >= sent, what="the page to answer every flush sent so far")


PAINTS_JS = """(() => {
  window.__painted = {};
  window.__streamed = {};
  const hook = () => {
    if (window.Bokeh === undefined || Bokeh.documents.length === 0) { setTimeout(hook, 10); return; }
    const proto = Bokeh.require('models/plots/plot_canvas').PlotView.prototype;
    const repaint = proto.repaint;
    proto.repaint = function () {
      const result = repaint.call(this);
      window.__painted[this.model.name] = performance.now();
      return result;
    };
    Bokeh.documents[0].on_change((event) => {
      if (event.kind === 'ColumnsStreamed') window.__streamed[event.model.name] = performance.now();
    });
  };
  hook();
})();"""
"""Records when each plot last repainted and when each source last had points streamed in."""
ALL_REPAINTED_JS = """(count) => {
  const charts = [...Bokeh.documents[0].all_models].filter((m) => (m.name ?? '').startsWith('chart:'));
  return charts.length >= count && charts.every((chart) => {
    const streamed = Math.max(0, ...chart.renderers.map((r) => window.__streamed[r.data_source.name] ?? 0));
    return (window.__painted[chart.name] ?? -1) > streamed;
  });
}"""
GLYPHS_CURRENT_JS = """(count) => {
  const charts = [...Bokeh.documents[0].all_models].filter((m) => (m.name ?? '').startsWith('chart:'));
  const lines = charts.flatMap((chart) => [...Bokeh.index.find(chart)])
    .flatMap((plot) => [...plot.renderer_views.values()]).filter((view) => view.glyph !== undefined);
  const current = (view) => view.glyph.data_size === view.model.data_source.get_length();
  return lines.length >= 2 * count && lines.every(current);
}"""
"""Every line's glyph (what its plot paints) holds as many points as its ColumnDataSource."""


def test_every_chart_repaints_after_its_latest_points(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """The page paints a few plots per frame (``paint_fix.js``); none may be left showing old data."""
    monitor = monitors("repaints")
    monitor.log(dict.fromkeys(SERIES, 0.0), step=0)
    viewer = viewers(server.url + "/?run=repaints", init_scripts=(PAINTS_JS,))
    for name in SERIES:
        viewer.wait_column_length(f"scalars:repaints:{name}", "step", 1)
    for step in range(1, 200):  # faster than the page paints ten charts
        monitor.log({name: float(step * i) for i, name in enumerate(SERIES)}, step=step)
    for name in SERIES:
        viewer.wait_column_length(f"scalars:repaints:{name}", "step", 200)
    viewer.wait(ALL_REPAINTED_JS, len(SERIES))
    viewer.wait(GLYPHS_CURRENT_JS, len(SERIES))  # brought up to date when their plot paints (paint_fix.js)


LAYERS_JS = """() => {
  const chart = [...Bokeh.documents[0].all_models].find((m) => (m.name ?? '').startsWith('chart:'));
  const plot = [...Bokeh.index.find(chart)][0];
  const { primary, overlays } = plot.canvas_view;
  const box = plot.canvas_view.el.getBoundingClientRect(), frame = plot.frame.bbox;
  return { primary: primary.canvas.style.display, overlays: overlays.canvas.style.display,
           frame: [box.left + frame.left, box.top + frame.top, frame.width, frame.height] };
}"""
"""The first chart's canvas layers (inline ``display``) and its frame in page coordinates."""
OVERLAY_SHOWN_JS = (
    "(shown) => { const l = (" + LAYERS_JS + ")(); return l.primary === '' && (l.overlays === '') === shown; }"
)
BOX_ZOOM_JS = """() => {
  const chart = [...Bokeh.documents[0].all_models].find((m) => (m.name ?? '').startsWith('chart:'));
  chart.toolbar.tools.find((tool) => tool.type === 'BoxZoomTool').active = true;
}"""


def test_an_empty_overlay_layer_leaves_the_page_until_a_tool_draws_on_it(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """``paint_fix.js`` change 11: a plot's overlay canvas is hidden while empty, shown while a box zoom draws."""
    monitor = monitors("layers")
    for step in range(20):
        monitor.log({"loss": 1.0 / (step + 1)}, step=step)
    viewer = viewers(server.url + "/?run=layers")
    viewer.wait_column_length("scalars:layers:loss", "step", 20)
    viewer.wait(OVERLAY_SHOWN_JS, False)

    viewer.page.evaluate(BOX_ZOOM_JS)
    left, top, width, height = viewer.page.evaluate(LAYERS_JS)["frame"]
    mouse = viewer.page.mouse
    mouse.move(left + width * 0.3, top + height * 0.3)
    mouse.down()
    mouse.move(left + width * 0.6, top + height * 0.7, steps=5)
    viewer.wait(OVERLAY_SHOWN_JS, True)  # the zoom box is on the overlay
    mouse.up()
    viewer.wait(OVERLAY_SHOWN_JS, False)  # the box is gone


LOOSE_LAYER_JS = """() => {
  const { CanvasLayer } = Bokeh.require('core/util/canvas');
  const layer = new CanvasLayer('canvas', false);  // as a legend entry makes for its glyph
  layer.resize(20, 10);
  layer.prepare();
  layer.finish();  // nothing drawn: a legend whose renderer has no data yet
  return layer.canvas.style.display;
}"""
"""A canvas layer that is not a plot's own, cleared and left empty: its inline ``display``."""


def test_an_empty_layer_that_is_not_a_plots_own_keeps_its_place(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Change 11 hides plots' own two layers only. A legend entry's glyph is a layer too, but in the flow
    of its row: hidden while its renderer has no data, its label moved over and the legend changed size
    when the data came (a review found it)."""
    monitors("loose").log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=loose")
    viewer.wait_column_length("scalars:loose:loss", "step", 1)
    viewer.wait(OVERLAY_SHOWN_JS, False)  # change 11 is in place: a chart's empty overlay is hidden
    assert viewer.page.evaluate(LOOSE_LAYER_JS) == ""


TOOLBAR_JS = """(name) => {
  const model = __find(name);
  const view = model && [...Bokeh.index.all_views()].find((v) => v.model === model);
  if (!view || !view.el.isConnected) return null;
  const frame = view.frame.bbox;
  return {location: model.toolbar_location, inner: model.toolbar_inner, autohide: model.toolbar.autohide,
          shown: view.toolbar_panel != null, width: frame.width, height: frame.height};
}"""
"""A chart's toolbar settings in the page, and the size of its frame (where it draws its lines)."""


def test_a_charts_toolbar_comes_after_its_first_paint_inside_the_chart(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """``paint_fix.js`` change 12: the server makes charts without a toolbar; the page gives each its toolbar
    once it has painted, inside the chart (shown on hover), so the chart's frame keeps its size."""
    monitor = monitors("tools")
    for step in range(5):
        monitor.log({"loss": 1.0 / (step + 1)}, step=step)
    viewer = viewers(server.url + "/?run=tools")
    viewer.wait_column_length("scalars:tools:loss", "step", 5)
    dressed = viewer.wait("() => __find('chart:loss')?.toolbar_location === 'above'")
    assert dressed
    after = viewer.wait(f"() => {{ const t = ({TOOLBAR_JS})('chart:loss'); return t && t.shown ? t : null }}")
    assert after["inner"] and after["autohide"], after
    tags = viewer.page.evaluate("() => __find('chart:loss').tags")
    # Untagged for a moment, or the page would give the toolbar back before it is measured without one.
    viewer.page.evaluate("() => __find('chart:loss').setv({tags: [], toolbar_location: null}, {sync: false})")
    viewer.wait(f"() => !({TOOLBAR_JS})('chart:loss').shown")
    viewer.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    bare = viewer.page.evaluate(TOOLBAR_JS, "chart:loss")
    assert (bare["width"], bare["height"]) == (after["width"], after["height"])  # the toolbar took no room
    viewer.page.evaluate(
        "(tags) => { const m = __find('chart:loss'); m.setv({tags}, {sync: false}); m.x_range.start -= 1 }", tags
    )
    viewer.wait("() => __find('chart:loss')?.toolbar_location === 'above'")  # taken away: given again on a paint


BK_OVERRIDES_JS = """() => {
  const found = new Set();
  const visit = (root) => {
    for (const el of root.querySelectorAll('*')) {
      for (const property of getComputedStyle(el)) if (property.startsWith('--bk-')) found.add(property);
      if (el.shadowRoot) visit(el.shadowRoot);
    }
  };
  visit(document);
  return [...found].sort();
}"""
"""The ``--bk-*`` custom properties in effect on any element of the page, shadow roots included."""


def test_no_element_of_the_page_has_a_bokeh_style_override(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """``paint_fix.js`` change 2 never looks for ``--bk-*`` overrides of a plot's visuals: this checks
    that no stylesheet sets one, and that the check would see one set."""
    monitor = monitors("overrides")
    for step in range(5):
        monitor.log({"loss": 1.0 / (step + 1), "accuracy": step / 5}, step=step)
    viewer = viewers(server.url + "/?run=overrides")
    viewer.wait_column_length("scalars:overrides:loss", "step", 5)
    viewer.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    assert viewer.page.evaluate(BK_OVERRIDES_JS) == []
    viewer.page.evaluate("() => document.body.style.setProperty('--bk-line-color', 'red')")
    assert "--bk-line-color" in viewer.page.evaluate(BK_OVERRIDES_JS)


READY_SETTLES_JS = """async () => {
  const ready = Promise.all(Bokeh.index.roots.map((view) => view.ready)).then(() => true);
  return await Promise.race([ready, new Promise((resolve) => setTimeout(() => resolve(false), 2000))]);
}"""
"""Whether every root view's ``ready`` promise settles (it resolves in microtasks unless a paint is chained in)."""


def hold_back_a_paint(viewer: Viewer, source: str, length: int, log: Callable[[int], None]) -> None:
    """Hold the page's animation frames back (``FRAMES_JS``), then ``log(i)`` one point at a time into
    ``source`` (``length`` points so far) until the page has asked for a frame: a paint is then queued
    and held back for good. The page answers at most two flushes before the server holds its feed."""
    viewer.page.evaluate("() => { window.__frames.on = false; }")
    for i in range(3):
        if viewer.page.evaluate("() => window.__frames.asked > 0"):
            return
        assert i < 2, "no paint was asked for while frames were held (the page answers two flushes)"
        log(i)
        viewer.wait_column_length(source, "step", length + i + 1)


def test_a_paint_still_to_come_does_not_hold_the_views_ready_promise(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Each link of a root view's ``ready`` chain waited for the latest paint asked of its plot.

    With a steady stream a paint is always to come, so the chain grew for as long as data came: the
    page's heap climbed until the stream stopped (``paint_fix.js``). Here a paint is held back for good.
    """
    monitor = monitors("ready")
    monitor.log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=ready", init_scripts=(FRAMES_JS,))
    viewer.wait_column_length("scalars:ready:loss", "step", 1)
    assert viewer.page.evaluate(READY_SETTLES_JS)
    hold_back_a_paint(viewer, "scalars:ready:loss", 1, lambda i: monitor.log({"loss": 1.0 / (i + 2)}, step=i + 1))
    assert viewer.page.evaluate(READY_SETTLES_JS)


FRAMES_JS = """(() => {
  const raf = window.requestAnimationFrame.bind(window);
  window.__frames = { on: true, held: [], asked: 0 };
  window.requestAnimationFrame = (callback) => {
    if (window.__frames.on) return raf(callback);
    window.__frames.asked += 1;
    window.__frames.held.push(callback);
    return 1;
  };
  window.__release_frames = () => {
    window.__frames.on = true;
    for (const callback of window.__frames.held.splice(0)) callback(performance.now());
  };
  window.__drawn = {};
  const hook = () => {
    if (window.Bokeh === undefined) { setTimeout(hook, 1); return; }
    const proto = Bokeh.require('models/renderers/glyph_renderer').GlyphRendererView.prototype;
    const paint = proto.paint;
    proto.paint = function (...args) {
      window.__drawn[this.model.id] = this.glyph.data_size;
      return paint.apply(this, args);
    };
  };
  hook();
})();"""
"""Animation frames the test can hold back and release, and how many points each line was last drawn with."""
LINES_DRAWN_JS = """(name) =>
  __find(name).renderers.every((r) => window.__drawn[r.id] === r.data_source.get_length())"""


def test_a_chart_painted_directly_before_its_turn_still_draws_its_newest_points(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """BokehJS paints a plot directly after a layout; one landing between a stream and the paint queued
    for it drew the old points and cleared what the stream invalidated, so the queued paint, after
    bringing the lines up to date, redrew nothing (``paint_fix.js``) until a range changed."""
    monitor = monitors("direct")
    for step in range(11):
        monitor.log({"loss": step / 10}, step=step)
    viewer = viewers(server.url + "/?run=direct", init_scripts=(FRAMES_JS,))
    viewer.wait_column_length("scalars:direct:loss", "step", 11)
    viewer.wait(LINES_DRAWN_JS, "chart:loss")
    # inside the chart's ranges: no range change repaints it
    hold_back_a_paint(viewer, "scalars:direct:loss", 11, lambda _i: monitor.log({"loss": 0.5}, step=5))
    assert not viewer.page.evaluate(LINES_DRAWN_JS, "chart:loss")
    viewer.page.evaluate("() => [...Bokeh.index.find(__find('chart:loss'))][0].paint()")  # as after a layout
    viewer.page.evaluate("() => window.__release_frames()")
    viewer.wait(LINES_DRAWN_JS, "chart:loss")


def test_fitted_ranges_stay_in_the_page(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """BokehJS's automatic range fits are not sent back to the server (``paint_fix.js``)."""
    monitor = monitors("ranges")
    monitor.log({"loss": 0.0}, step=0)
    viewer = viewers(server.url + "/?run=ranges")
    viewer.wait_column_length("scalars:ranges:loss", "step", 1)
    for step in range(1, 20):
        monitor.log({"loss": float(step)}, step=step)
    viewer.wait_column_length("scalars:ranges:loss", "step", 20)
    end = viewer.wait("() => { const r = __find('chart:loss').y_range; return r.end >= 19 ? r.end : null }")
    assert end >= 19

    def server_side() -> list[float]:
        sessions = server.running._bokeh.get_sessions("/") if server.running._bokeh is not None else []
        charts = [session.document.get_model_by_name("chart:loss") for session in sessions]
        return [float(chart.y_range.end) for chart in charts if chart is not None]

    ends = server.call(server_side)
    assert ends and all(math.isnan(end) for end in ends), f"the server's y_range.end: {ends}"


FORMAT_JS = """(ticks) => {
  const formatter = __find('chart:stamp').left[0].formatter;
  return formatter.doFormat(ticks, {});
}"""


def test_y_labels_keep_one_width_that_only_grows(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """A y axis that changes width re-lays out the charts around it; its labels' width may only grow."""
    monitor = monitors("labels")
    monitor.log({"stamp": 0.5}, step=0)
    viewer = viewers(server.url + "/?run=labels")
    viewer.wait_column_length("scalars:labels:stamp", "step", 1)
    small = viewer.page.evaluate(FORMAT_JS, [0.0, 0.5, 1.0])
    assert len({len(label) for label in small}) == 1 and len(small[0]) >= 9, small
    wide = viewer.page.evaluate(FORMAT_JS, [1_700_000_000.0, 1_700_000_001.0, 1_700_000_002.0])
    assert len({len(label) for label in wide}) == 1 and len(wide[0]) > len(small[0]), wide
    assert len(set(wide)) == 3, "ticks a second apart on a timestamp still read differently"
    again = viewer.page.evaluate(FORMAT_JS, [0.0, 0.5, 1.0])
    assert [label.strip() for label in again] == [label.strip() for label in small]
    assert {len(label) for label in again} == {len(wide[0])}, "the axis does not narrow again"
