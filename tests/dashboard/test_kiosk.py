"""The lab screen (kiosk view): its pages in turn, one window high, with nothing to click.

The first tests drive ``KioskStage`` with real panels and a clock passed in;
the last opens ``/?kiosk=1`` in Chromium with a real producer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from monitor.dashboard.batch import Batch
from monitor.dashboard.kiosk import MIN_SECONDS, KioskStage
from monitor.dashboard.panels.curves import CurvesPanel
from monitor.dashboard.panels.predictions import PredictionsPanel
from monitor.dashboard.panels.weights import WeightsPanel
from monitor.dashboard.theme import KIOSK
from monitor.wire import Histogram, Predictions, Scalars
from producers.client import Monitor
from tests.dashboard.conftest import Viewer
from tests.serving import ServerThread


def _stage(seconds: float = 10.0) -> tuple[KioskStage, CurvesPanel, WeightsPanel, PredictionsPanel]:
    curves, weights, predictions = CurvesPanel(KIOSK, str, kiosk=True), WeightsPanel(KIOSK), PredictionsPanel(KIOSK)
    for panel in (curves, weights, predictions):
        panel.reset(["r"])
    return KioskStage(KIOSK, curves, [("Weights", weights), ("Predictions", predictions)], seconds), *(
        curves, weights, predictions,
    )  # fmt: skip


def _scalars(names: list[str]) -> Scalars:
    n = len(names)
    return Scalars("r", 1, tuple(names), np.zeros(n, np.int64), np.zeros(n), np.arange(n, dtype=np.int64), np.ones(n))


def _histogram(name: str) -> Histogram:
    edges, counts = np.linspace(-1.0, 1.0, 5), np.array([1.0, 2.0, 3.0, 4.0])
    return Histogram("r", 2, name, 0, 0.0, edges, counts, -1.0, 1.0, 0.0, 0.5, 10, 0)


def _predictions(samples: int) -> Predictions:
    outputs = np.full((samples, 2), 0.5)
    return Predictions("r", 3, "validation", 0, 0.0, "classification", np.zeros(samples, np.int64), outputs)


def _shown(stage: KioskStage, ticks: list[float]) -> list[str]:
    shown = []
    for now in ticks:
        stage.tick(now)
        shown.append(stage.shown)
    return shown


def test_pages_turn_after_their_time_and_panels_with_nothing_to_show_are_skipped() -> None:
    stage, curves, weights, _predictions_panel = _stage(seconds=10)
    curves.update(Batch.of([_scalars(["loss"])]))
    assert _shown(stage, [0, 5, 10, 20]) == ["Training"] * 4  # nothing else to show: it stays
    weights.update(Batch.of([_histogram("dense/kernel")]))
    assert _shown(stage, [29, 30, 39, 40]) == ["Training", "Weights", "Weights", "Training"]
    assert "▶ Training" in stage.indicator.text and "Weights" in stage.indicator.text
    assert "Predictions" not in stage.indicator.text


def test_each_visit_shows_the_next_tensor_and_sample_and_names_it() -> None:
    stage, curves, weights, predictions = _stage(seconds=MIN_SECONDS)
    curves.update(Batch.of([_scalars(["loss"])]))
    weights.update(Batch.of([_histogram("a/kernel"), _histogram("b/kernel")]))
    predictions.update(Batch.of([_predictions(samples=3)]))
    seen = []
    for now in range(0, 14, 2):  # Training, Weights, Predictions, Training, Weights, Predictions, Training
        stage.tick(float(now))
        seen.append((stage.shown, weights.caption(), predictions.caption()))
    assert [s for s, _, _ in seen] == ["Training", "Weights", "Predictions"] * 2 + ["Training"]
    assert [w for s, w, _ in seen if s == "Weights"] == ["a/kernel", "b/kernel"]
    assert [p for s, _, p in seen if s == "Predictions"] == ["sample 0 of 3", "sample 1 of 3"]
    stage.tick(14.0)
    assert "▶ Weights</b>" in stage.indicator.text and "a/kernel" in stage.indicator.text  # after the last, the first
    assert not weights.layer.visible and not predictions.slider.visible  # no controls on a lab screen


def test_other_runs_start_again_from_the_curves_and_the_first_tensor() -> None:
    stage, curves, weights, _predictions_panel = _stage(seconds=MIN_SECONDS)
    curves.update(Batch.of([_scalars(["loss"])]))
    weights.update(Batch.of([_histogram("a/kernel"), _histogram("b/kernel")]))
    assert _shown(stage, [0, 2, 4, 6]) == ["Training", "Weights", "Training", "Weights"]
    assert weights.caption() == "b/kernel"
    for panel in (curves, weights):
        panel.reset(["r"])  # as when the lab screen follows a newer run (here under the same id)
    stage.reset()
    weights.update(Batch.of([_histogram("a/kernel"), _histogram("b/kernel")]))
    assert _shown(stage, [7, 9]) == ["Training", "Weights"]
    assert weights.caption() == "a/kernel"  # its first tensor, not the one after the last shown


def test_many_charts_are_shown_on_pages_of_even_size() -> None:
    stage, curves, _weights, _predictions_panel = _stage(seconds=MIN_SECONDS)
    names = ["loss", "accuracy", "learning_rate", "grad_norm", "alpha", "beta", "gamma", "delta"]
    curves.update(Batch.of([_scalars(names)]))
    assert curves.pages() == 2
    grid = curves.layout.children[2]
    shown = []
    for now in (0.0, 2.0, 4.0):
        stage.tick(now)
        shown.append((stage.shown, len(grid.children), max(column for _, _, column in grid.children) + 1))
    assert shown == [("Training 1/2", 4, 2), ("Training 2/2", 4, 2), ("Training 1/2", 4, 2)]


def test_a_page_that_empties_gives_way_at_once() -> None:
    stage, curves, weights, _predictions_panel = _stage(seconds=10)
    curves.update(Batch.of([_scalars(["loss"])]))
    weights.update(Batch.of([_histogram("dense/kernel")]))
    assert _shown(stage, [0, 10]) == ["Training", "Weights"]
    weights.reset(["another run"])  # a lab screen follows the newest run: its weights are not there yet
    assert _shown(stage, [11]) == ["Training"]


LAID_OUT_JS = """(name) => { const model = __find(name);
  const view = model === null ? undefined : [...Bokeh.index.find(model)][0];
  return view !== undefined && view.el.isConnected && view.el.getBoundingClientRect().height > 0 }"""
SIZES_JS = """() => new Promise((resolve) => {
  const root = document.documentElement;  // measured once the next frame is drawn
  requestAnimationFrame(() => requestAnimationFrame(() =>
    resolve([root.scrollWidth, root.scrollHeight, innerWidth, innerHeight])));
})"""


def _sizes(viewer: Viewer, name: str) -> list[int]:
    """The page's scroll width and height and the window's, once the model ``name`` is laid out and drawn.

    Waits for the layout first: a wait on a promise returns the promise (always truthy) at once.
    """
    viewer.wait(LAID_OUT_JS, name)
    return list(viewer.page.evaluate(SIZES_JS))


def test_the_lab_screen_fits_the_window_and_turns_its_pages(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("screen")
    tensors = [f"block{i}/very_long_layer_name_{i}/kernel" for i in range(8)]  # legends longer than a chart
    per_tensor = {f"{kind}/{t}": 1.0 for kind in ("weights_norm", "update_ratio") for t in tensors}
    for step in range(3):
        scalars = {"loss": 1.0 / (step + 1), "accuracy": 0.5, "lr": 0.1, "grad_norm": 2.0, "other": 1.0}
        monitor.log({**scalars, **per_tensor}, step=step)  # 7 charts: two pages
    monitor.histogram("dense/kernel", np.random.default_rng(0).normal(size=100), step=2)
    monitor.predictions("validation", np.array([0, 1]), np.array([[0.9, 0.1], [0.3, 0.7]]), step=2)
    viewer = viewers(server.url + "/?kiosk=1&cycle=2", viewport={"width": 1024, "height": 720})
    shown = {  # each page, and a model it shows that is laid out once the page is
        "▶ Training 1/2": "chart:loss",
        "▶ Training 2/2": "chart:weights_norm",
        "▶ Weights": "weights-current-figure",
        "▶ Predictions": "predictions-confusion-figure",
    }
    for page, name in shown.items():
        viewer.wait_text("kiosk-pages", page, timeout=30_000)
        width, height, window_width, window_height = _sizes(viewer, name)
        assert width <= window_width and height <= window_height, (page, width, height)  # nothing off the window


COLUMNS_JS = """(name) => { const grid = __find(name);
  return grid && grid.children.length >= 3 ? [...new Set(grid.children.map(([, , column]) => column))] : null }"""


def _columns(viewer: Viewer, name: str, count: int) -> None:
    viewer.wait(f"() => {{ const c = ({COLUMNS_JS})('{name}'); return c !== null && c.length === {count} }}")


def test_a_portrait_screen_gets_one_column_of_charts(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("tall")
    monitor.log({"loss": 1.0, "accuracy": 0.5, "lr": 0.1, "grad_norm": 2.0}, step=0)
    tensor = "block0/a_layer_with_a_very_long_name/kernel"  # the page line must wrap, not widen the page
    monitor.histogram(tensor, np.random.default_rng(0).normal(size=100), step=0)
    portrait = viewers(server.url + "/?kiosk=1&cycle=2", viewport={"width": 720, "height": 1280})
    landscape = viewers(server.url + "/?kiosk=1", viewport={"width": 1280, "height": 720})
    _columns(landscape, "curves-grid", 2)  # four charts: two by two
    _columns(portrait, "curves-grid", 1)
    portrait.wait_text("kiosk-pages", "▶ Weights", timeout=30_000)
    _columns(portrait, "weights-strip", 1)  # the histogram, bands and heatmap stacked, not three narrow charts
    width, _height, window_width, _window_height = _sizes(portrait, "weights-current-figure")
    assert width <= window_width
    portrait.page.set_viewport_size({"width": 1280, "height": 720})  # the screen turned: side by side again
    _columns(portrait, "weights-strip", 3)
    portrait.wait_text("kiosk-pages", "▶ Training", timeout=30_000)
    _columns(portrait, "curves-grid", 2)
