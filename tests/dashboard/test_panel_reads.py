"""What the header, the lab screen and the Weights, Model, Data and Predictions tabs show, read in the page.

Each test sends known values with the real ``Monitor`` to one real server
(shared by the module, with a one-second stale time) and reads them back
from the page's own Bokeh models (``Bokeh.documents[0]``) or from the
rendered DOM in headless Chromium, comparing them with what was sent. Every
wait is on a condition; a producer thread paces its points to keep a run
running, never to synchronise with the page.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bokeh.palettes import Category10_10

from monitor.dashboard.theme import LIGHT
from producers.client import Monitor
from tests.dashboard.conftest import Viewer
from tests.serving import ServerThread

pytestmark = pytest.mark.browser

STALE_AFTER = 1.0
"""The module server's stale time: a run silent for over a second is stale."""
BATCH = 32
PANELS = "panels"
CLASSES = ["cat", "dog", "eel"]
LABEL_COUNTS = [10, 30, 60]
EDGES = np.linspace(-1.0, 1.0, 65)  # the bins of every histogram sent
HIST_STEPS = [0, 5, 10]
GRAPH_NODES = ["input", "conv", "left", "right", "add", "head"]
GRAPH_EDGES = [("input", "conv"), ("conv", "left"), ("conv", "right"), ("left", "add"), ("right", "add"),
               ("input", "add"), ("add", "head")]  # fmt: skip
EMBED_TRUE = np.array([2, 0, 1, 2, 1, 0, 0, 2, 1, 1, 0, 2])
SPEED_RE = re.compile(r"<b>([\d,.]+)</b> steps/s(?: · <b>([\d,]+)</b> samples/s)?")
AGE_RE = re.compile(r"last data (\d+)s ago")
AGE_AT_LEAST_JS = """(n) => { const t = __find('header-age').text, m = /last data (\\d+)s ago/.exec(t);
  return m && Number(m[1]) >= n ? t : null }"""
# The first <span> of a Div as drawn (in its view's shadow root), with its computed style, once it says ``needle``.
DRAWN_JS = """([name, needle]) => { const model = __find(name);
  const view = model === null ? undefined : [...Bokeh.index.find(model)][0];
  const span = view?.el.shadowRoot?.querySelector('span');
  if (!span?.isConnected || !span.textContent.includes(needle) || !span.getBoundingClientRect().height) return null;
  const style = getComputedStyle(span);
  return {text: span.textContent, color: style.color, background: style.backgroundColor,
          size: parseFloat(style.fontSize), weight: Number(style.fontWeight)} }"""
# The heatmap's image once ``n`` of its columns are filled (the others, if any, are all NaN).
HEATMAP_JS = """(n) => { const m = __find('weights-heatmap');
  const image = m?.data.image?.[0];
  if (!image || !image.shape) return null;
  const [rows, columns] = image.shape;
  let filled = 0;
  for (let c = 0; c < columns; c++) for (let r = 0; r < rows; r++) if (!Number.isNaN(image[r * columns + c])) {
    filled++; break; }
  if (filled < n) return null;
  return {shape: [rows, columns], values: Array.from(image, (v) => Number.isNaN(v) ? null : v),
          x: m.data.x[0], dw: m.data.dw[0], y: m.data.y[0], dh: m.data.dh[0]} }"""
# The colours (RGBA integers) the embedding's scatter gives its points, through its own colour mapper.
EMBED_COLORS_JS = """() => { const source = __find('predictions-embedding');
  const renderer = [...Bokeh.documents[0]._all_models.values()].find(
    (m) => m.type === 'GlyphRenderer' && m.data_source === source);
  const mapper = renderer.glyph.fill_color.transform;
  return {field: renderer.glyph.fill_color.field, colors: Array.from(mapper.v_compute(source.data.label))} }"""
WEDGE_JS = """() => { const source = __find('data-labels');
  const renderer = [...Bokeh.documents[0]._all_models.values()].find(
    (m) => m.type === 'GlyphRenderer' && m.data_source === source && m.glyph.type === 'Wedge');
  return [renderer.glyph.start_angle.field, renderer.glyph.end_angle.field] }"""


def rgb(color: str) -> str:
    """``"#ff7f0e"`` as the browser computes it: ``"rgb(255, 127, 14)"``."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One server for the module (overrides conftest's per-test one, which ``monitors`` then uses)."""
    store: Path = tmp_path_factory.mktemp("panel_reads") / "store.sqlite"
    thread = ServerThread(store, stale_after=STALE_AFTER)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def panels(server: ServerThread) -> Iterator[Monitor]:
    """A run that sent histograms, a graph, a labelled data summary and classified predictions with an embedding."""
    monitor = Monitor(url=server.url, run=PANELS, name=PANELS, flush_interval=0.01)
    try:
        monitor.log({"loss": 1.0}, step=0)
        for step, counts in zip(HIST_STEPS, heatmap_counts(), strict=True):
            monitor.histogram("dense/kernel", (EDGES, counts), step=step)
        nodes = [{"name": n, "type": "Dense", "output_shape": "(None, 4)", "params": 4, "trainable": 4}
                 for n in GRAPH_NODES]  # fmt: skip
        monitor.graph(nodes, GRAPH_EDGES)
        labels = np.random.default_rng(1).permutation(np.repeat(np.arange(3), LABEL_COUNTS))
        features = np.random.default_rng(2).normal(size=(len(labels), 2))
        monitor.data_summary(features, labels=labels, feature_names=["h", "w"], label_names=CLASSES)
        outputs = np.full((len(EMBED_TRUE), 3), 0.1) + 0.7 * np.eye(3)[EMBED_TRUE]
        embedding = np.column_stack([np.arange(len(EMBED_TRUE)), np.arange(len(EMBED_TRUE)) * 2.0])
        monitor.predictions("validation", EMBED_TRUE, outputs, step=0, classes=CLASSES, embedding=embedding)
        yield monitor
    finally:
        monitor.finish(timeout=5)


def heatmap_counts() -> list[np.ndarray[Any, Any]]:
    """Counts of the three histograms sent, one per step: small whole numbers, exact in float32."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 50, size=len(EDGES) - 1).astype(np.float64) for _ in HIST_STEPS]


class Pacer:
    """Logs ``metrics`` at one step more every 20 ms in a thread, so the run stays running until the block ends."""

    def __init__(self, monitor: Monitor, metrics: dict[str, float]) -> None:
        self.monitor, self.metrics = monitor, metrics
        self.last_sent = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pacer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        step = 0
        while not self._stop.is_set():
            self.last_sent = time.time()
            self.monitor.log(self.metrics, step=step)
            step += 1
            self._stop.wait(0.02)


def speed(viewer: Viewer) -> tuple[float, float | None]:
    """The header's steps/s and samples/s, once it shows samples/s."""
    text = viewer.wait("() => { const t = __find('header-speed').text; return t.includes('samples/s') ? t : null }")
    match = SPEED_RE.search(text)
    assert match is not None, text
    return float(match[1].replace(",", "")), float(match[2].replace(",", "")) if match[2] else None


def age(text: str) -> int:
    match = AGE_RE.search(text)
    assert match is not None, text
    return int(match[1])


def test_header_shows_samples_per_second_then_stale_with_the_age_of_the_data_then_crashed(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("speedy", config={"batch_size": BATCH})
    with Pacer(monitor, {"loss": 1.0}) as pacer:
        viewer = viewers(server.url + "/?run=speedy")
        viewer.wait_text("header-status", "RUNNING")
        steps, samples = speed(viewer)
        assert steps > 0 and samples is not None
        assert abs(samples - steps * BATCH) <= 0.05 * BATCH + 0.5  # steps/s (to 0.1) times the batch size
    last_sent = pacer.last_sent
    viewer.wait_text("header-status", "STALE")  # nothing sent for over a second
    badge = viewer.wait(DRAWN_JS, ["header-status", "STALE"])
    assert badge["text"] == "STALE" and badge["background"] == rgb(LIGHT.status_color("stale"))
    viewer.wait("() => __find('header-speed').text === '' && __find('header-eta').text === ''")  # nor a speed
    stale_age = viewer.wait_text("header-age", "last data")
    assert f"color:{LIGHT.status_color('stale')}" in stale_age  # in the badge's colour
    seconds = age(stale_age)
    assert STALE_AFTER <= seconds <= time.time() - last_sent  # over the stale time; no more than since the last
    later = viewer.wait(AGE_AT_LEAST_JS, seconds + 2)
    assert seconds + 2 <= age(later) <= time.time() - last_sent  # it counts up while nothing comes

    monitor.log({"loss": 0.5}, step=10_000)  # data again: running, and the age back near zero
    viewer.wait_text("header-status", "RUNNING")
    assert age(viewer.wait_text("header-age", "last data")) <= 1
    monitor.finish("crashed")
    viewer.wait_text("header-status", "CRASHED")
    drawn = viewer.wait(DRAWN_JS, ["header-status", "CRASHED"])
    assert drawn["text"] == "CRASHED" and drawn["background"] == rgb(LIGHT.status_color("crashed"))
    assert "color:" not in (viewer.text("header-age") or "")  # only a stale run's age is coloured
    viewer.wait("() => __find('header-speed').text === ''")
    viewer.wait_text("events", "crashed")


def test_header_shows_the_samples_per_second_the_producer_sends(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("throughput")  # no batch size in its config: the rate it logs is shown
    with Pacer(monitor, {"loss": 1.0, "samples_per_sec": 1234.0}):
        viewer = viewers(server.url + "/?run=throughput")
        steps, samples = speed(viewer)
    assert steps > 0 and samples == 1234.0


def test_the_lab_screen_shows_a_stale_run_large_and_in_the_stale_colour(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("lab")
    for step in range(3):
        monitor.log({"loss": 1.0 / (step + 1)}, step=step)
    kiosk = viewers(server.url + "/?kiosk=1")
    kiosk.wait_text("header-run", "<b>lab</b>")  # the newest run
    kiosk.wait_text("header-status", "STALE")
    desk = viewers(server.url + "/?run=lab")
    desk.wait_text("header-status", "STALE")
    orange = rgb(LIGHT.status_color("stale"))
    drawn = {}
    for where, viewer in (("kiosk", kiosk), ("desk", desk)):
        badge = viewer.wait(DRAWN_JS, ["header-status", "STALE"])
        shown = viewer.wait(DRAWN_JS, ["header-age", "last data"])
        assert badge["text"] == "STALE" and badge["background"] == orange, (where, badge)
        assert AGE_RE.search(shown["text"]) and shown["color"] == orange and shown["weight"] >= 700, (where, shown)
        drawn[where] = (badge["size"], shown["size"])
    (kiosk_badge, kiosk_age), (desk_badge, desk_age) = drawn["kiosk"], drawn["desk"]
    assert kiosk_badge >= 40 and kiosk_age >= 40, drawn  # read across a room
    assert kiosk_badge >= 1.5 * desk_badge and kiosk_age >= 1.5 * desk_age, drawn


def test_weights_heatmap_holds_each_histogram_sent_as_a_column_at_its_step(
    server: ServerThread, viewers: Callable[..., Viewer], panels: Monitor
) -> None:
    viewer = viewers(server.url + f"/?run={PANELS}&tab=weights")
    sent = list(zip(HIST_STEPS, heatmap_counts(), strict=True))
    check_heatmap(viewer.wait(HEATMAP_JS, len(sent)), sent)  # from the run's history
    live = (15, heatmap_counts()[0][::-1].copy())
    panels.histogram("dense/kernel", (EDGES, live[1]), step=live[0])
    check_heatmap(viewer.wait(HEATMAP_JS, len(sent) + 1), [*sent, live])  # one more, live


def check_heatmap(heatmap: dict[str, Any], sent: list[tuple[int, np.ndarray[Any, Any]]]) -> None:
    """Rows are value bins over [y, y + dh], columns steps over [x, x + dw]: the first columns hold ``sent``."""
    rows, columns = heatmap["shape"]
    image = np.array([np.nan if v is None else v for v in heatmap["values"]]).reshape(rows, columns)
    filled = [c for c in range(columns) if not np.isnan(image[:, c]).all()]
    assert filled == list(range(len(sent))), "a column per histogram sent, oldest first; the rest empty"
    assert heatmap["y"] <= EDGES[0] and heatmap["y"] + heatmap["dh"] >= EDGES[-1]  # the values sent are all in
    grid = np.linspace(heatmap["y"], heatmap["y"] + heatmap["dh"], rows + 1)
    width = heatmap["dw"] / columns
    for column, (step, counts) in enumerate(sent):
        cdf = np.concatenate(([0.0], np.cumsum(counts)))  # the histogram sent, on the image's value bins
        expected = np.diff(np.interp(grid, EDGES, cdf))
        assert image[:, column] == pytest.approx(expected, rel=1e-5, abs=1e-4), f"the histogram of step {step}"
        left = heatmap["x"] + column * width
        assert left <= step <= left + width, f"column {column} is not drawn over step {step}"


def test_model_graph_draws_an_edge_for_each_edge_sent(
    server: ServerThread, viewers: Callable[..., Viewer], panels: Monitor
) -> None:
    viewer = viewers(server.url + f"/?run={PANELS}&tab=model")
    names = viewer.wait_column_length("model-nodes", "name", len(GRAPH_NODES))
    xs, ys = viewer.column("model-nodes", "x") or [], viewer.column("model-nodes", "y") or []
    at = {(x, y): name for name, x, y in zip(names, xs, ys, strict=True)}
    assert sorted(names) == sorted(GRAPH_NODES) and len(at) == len(names)  # one place per layer
    viewer.wait_column_length("model-edges", "x0", len(GRAPH_EDGES))
    ends = [viewer.column("model-edges", c) or [] for c in ("x0", "y0", "x1", "y1")]
    drawn = [(at[(x0, y0)], at[(x1, y1)]) for x0, y0, x1, y1 in zip(*ends, strict=True)]
    assert sorted(drawn) == sorted(GRAPH_EDGES)


def test_data_label_pie_wedges_span_each_labels_share(
    server: ServerThread, viewers: Callable[..., Viewer], panels: Monitor
) -> None:
    viewer = viewers(server.url + f"/?run={PANELS}&tab=data")
    assert viewer.wait_column_length("data-labels", "label", len(CLASSES)) == CLASSES
    assert viewer.column("data-labels", "count") == LABEL_COUNTS
    assert viewer.page.evaluate(WEDGE_JS) == ["start", "end"]  # the pie draws these columns
    total, shares = sum(LABEL_COUNTS), np.cumsum(LABEL_COUNTS)
    ends = [2 * math.pi * s / total for s in shares]
    assert viewer.column("data-labels", "end") == pytest.approx(ends)
    assert viewer.column("data-labels", "start") == pytest.approx([0.0, *ends[:-1]])


def test_predictions_embedding_of_a_classification_is_coloured_by_class(
    server: ServerThread, viewers: Callable[..., Viewer], panels: Monitor
) -> None:
    viewer = viewers(server.url + f"/?run={PANELS}&tab=predictions")
    xs = viewer.wait_column_length("predictions-embedding", "x", len(EMBED_TRUE))
    labels, names = viewer.column("predictions-embedding", "label"), viewer.column("predictions-embedding", "name")
    ys = viewer.column("predictions-embedding", "y") or []
    samples = [int(x) for x in xs]  # each point's x is its sample's index
    assert sorted(samples) == list(range(len(EMBED_TRUE))) and ys == [2.0 * i for i in samples]
    assert labels == [str(EMBED_TRUE[i]) for i in samples]
    assert names == [CLASSES[EMBED_TRUE[i]] for i in samples]
    coloured = viewer.page.evaluate(EMBED_COLORS_JS)
    assert coloured["field"] == "label"
    colors = [f"#{rgba >> 8:06x}" if rgba & 0xFF == 0xFF else rgba for rgba in coloured["colors"]]  # opaque RGBA
    assert colors == [Category10_10[EMBED_TRUE[i]] for i in samples]  # the class's colour, one per class
    assert len(set(colors)) == len(CLASSES)
