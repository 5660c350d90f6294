"""The dashboard's controls, operated in real headless Chromium against a real server.

Each control is changed the way its BokehJS view changes it (a model property
set in the page, which syncs to the server); the effect is read back from the
page's own models. Every wait is on a condition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

from monitor.dashboard.panels.predictions import RESIDUAL_BINS
from monitor.dashboard.smoothing import ema
from producers.client import Monitor
from tests.dashboard.conftest import Viewer
from tests.dashboard.test_app import wait_until
from tests.serving import ServerThread

pytestmark = pytest.mark.browser

# A slider's view sets ``value`` while the handle moves and both ``value`` and
# ``value_throttled`` when it is let go (BokehJS ``AbstractSliderView._slide`` / ``_change``).
DRAG_JS = "([n, v]) => { __find(n).value = v; return true }"
RELEASE_JS = "([n, v]) => { __find(n).setv({value: v, value_throttled: v}); return true }"
SET_JS = "([n, attr, v]) => { __find(n)[attr] = v; return true }"
SELECT_ROWS_JS = "(indices) => { __find('runs-table').selected.indices = indices; return true }"
CLOSE_JS = """([s, c, expected]) => { const m = __find(s);
  if (!m || !m.data[c] || m.data[c].length !== expected.length) return false;
  return expected.every((e, i) => { const v = m.data[c][i];
    return e === null ? Number.isNaN(v) : Math.abs(v - e) <= 1e-9 * Math.max(1, Math.abs(e)) }) }"""
CHART_JS = """(name) => { const fig = __find(name); if (!fig) return null;
  const lines = fig.renderers.filter((r) => r.type === 'GlyphRenderer').map((r) => ({
    source: r.data_source.name, x: r.glyph.x.field, y: r.glyph.y.field, length: r.data_source.data.value.length }));
  return { y_scale: fig.y_scale.type, x_scale: fig.x_scale.type, x_axis: fig.below[0].type,
           y_axis: fig.left[0].type, x_label: fig.below[0].axis_label, lines } }"""


def nan_as_none(values: Iterable[float]) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def wait_column_close(viewer: Viewer, source: str, column: str, expected: Iterable[float]) -> list[Any]:
    """Wait until ``source.column`` equals ``expected`` (to 1e-9 relative; NaN matches NaN); return it."""
    viewer.wait(CLOSE_JS, [source, column, nan_as_none(expected)])
    return viewer.column(source, column) or []


def server_slider_values(server: ServerThread, name: str) -> list[Any]:
    """The value of widget ``name`` in every dashboard session's document on the server."""

    def read() -> list[Any]:
        bokeh = server.running._bokeh
        assert bokeh is not None
        return [getattr(s.document.get_model_by_name(name), "value", None) for s in bokeh.get_sessions("/")]

    return server.call(read)


def chart(viewer: Viewer, name: str) -> dict[str, Any]:
    return viewer.page.evaluate(CHART_JS, name)  # type: ignore[no-any-return]


def test_smoothing_slider_resmooths_every_line_and_later_points_continue_with_it(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    rng = np.random.default_rng(1)
    loss = (1.0 / np.arange(1, 31) + rng.normal(0, 0.05, 30)).tolist()
    loss[7] = float("nan")  # a gap: NaN in the smoothed line, skipped by the average
    val_loss = (2.0 / np.arange(1, 31) + rng.normal(0, 0.05, 30)).tolist()
    monitor = monitors("smooth")
    for step in range(30):
        monitor.log({"loss": loss[step], "val_loss": val_loss[step]}, step=step)
    viewer = viewers(server.url + "/?run=smooth")
    viewer.wait_column_length("scalars:smooth:loss", "step", 30)
    viewer.wait_column_length("scalars:smooth:val_loss", "step", 30)
    assert viewer.page.evaluate("() => __find('curves-smoothing').value") == 0.6
    smoothed = viewer.column("scalars:smooth:loss", "smooth") or []
    assert nan_as_none(smoothed) == pytest.approx(nan_as_none(ema(np.array(loss), 0.6)[0]))

    viewer.page.evaluate(RELEASE_JS, ["curves-smoothing", 0.9])
    wait_column_close(viewer, "scalars:smooth:loss", "smooth", ema(np.array(loss), 0.9)[0])
    wait_column_close(viewer, "scalars:smooth:val_loss", "smooth", ema(np.array(val_loss), 0.9)[0])
    assert np.isnan((viewer.column("scalars:smooth:loss", "smooth") or [])[7])
    assert viewer.column("scalars:smooth:loss", "value")[:7] == pytest.approx(loss[:7])  # type: ignore[index]

    more = [0.05, 0.04, 0.08]
    for offset, value in enumerate(more):
        monitor.log({"loss": value}, step=30 + offset)
    loss += more
    wait_column_close(viewer, "scalars:smooth:loss", "smooth", ema(np.array(loss), 0.9)[0])

    viewer.page.evaluate(RELEASE_JS, ["curves-smoothing", 0.0])
    assert nan_as_none(wait_column_close(viewer, "scalars:smooth:loss", "smooth", loss)) == nan_as_none(loss)
    wait_column_close(viewer, "scalars:smooth:val_loss", "smooth", val_loss)


def test_points_streamed_while_the_smoothing_handle_moves_keep_the_weight_last_applied(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    values = [4.0, 1.0, 3.0, 2.0, 5.0]
    monitor = monitors("dragged")
    for step, value in enumerate(values[:2]):
        monitor.log({"loss": value}, step=step)
    viewer = viewers(server.url + "/?run=dragged")
    viewer.wait_column_length("scalars:dragged:loss", "step", 2)
    viewer.page.evaluate(RELEASE_JS, ["curves-smoothing", 0.5])
    wait_column_close(viewer, "scalars:dragged:loss", "smooth", ema(np.array(values[:2]), 0.5)[0])

    viewer.page.evaluate(DRAG_JS, ["curves-smoothing", 0.9])  # handle held at 0.9, not let go
    wait_until(lambda: server_slider_values(server, "curves-smoothing") == [0.9], what="the drag to reach the server")
    for step in range(2, 5):
        monitor.log({"loss": values[step]}, step=step)
    viewer.wait_column_length("scalars:dragged:loss", "step", 5)
    smooth = viewer.column("scalars:dragged:loss", "smooth") or []
    assert smooth == pytest.approx(ema(np.array(values), 0.5)[0].tolist())

    viewer.page.evaluate(RELEASE_JS, ["curves-smoothing", 0.5])  # let go where it started: nothing to re-smooth
    monitor.log({"loss": 0.0}, step=5)
    values.append(0.0)
    wait_column_close(viewer, "scalars:dragged:loss", "smooth", ema(np.array(values), 0.5)[0])


def test_log_y_and_time_x_rebuild_the_charts_around_the_same_lines(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    before = time.time()
    monitor = monitors("axes")
    for step in range(10):
        monitor.log({"loss": 10.0 ** -(step / 3), "val_loss": 2.0 * 10.0 ** -(step / 3)}, step=step)
    viewer = viewers(server.url + "/?run=axes")
    viewer.wait_column_length("scalars:axes:loss", "step", 10)
    viewer.wait_column_length("scalars:axes:val_loss", "step", 10)
    linear = chart(viewer, "chart:loss")
    assert (linear["y_scale"], linear["x_axis"], linear["x_label"]) == ("LinearScale", "LinearAxis", "step")
    expected_lines = sorted(
        (f"scalars:axes:{series}", "step", y, 10) for series in ("loss", "val_loss") for y in ("value", "smooth")
    )

    viewer.page.evaluate(SET_JS, ["curves-y-scale", "active", 1])
    viewer.wait("() => __find('chart:loss')?.y_scale.type === 'LogScale'")
    log_y = chart(viewer, "chart:loss")
    assert (log_y["y_axis"], log_y["x_axis"], log_y["x_label"]) == ("LogAxis", "LinearAxis", "step")
    assert sorted(tuple(line.values()) for line in log_y["lines"]) == expected_lines

    viewer.page.evaluate(SET_JS, ["curves-x-axis", "active", 1])
    viewer.wait("() => __find('chart:loss')?.below[0].type === 'DatetimeAxis'")
    by_time = chart(viewer, "chart:loss")
    assert (by_time["y_scale"], by_time["y_axis"], by_time["x_label"]) == ("LogScale", "LogAxis", "time")
    assert sorted(tuple(line.values()) for line in by_time["lines"]) == [
        (source, "wall", y, length) for source, _, y, length in expected_lines
    ]
    wall = viewer.column("scalars:axes:loss", "wall") or []
    assert all(before * 1000 <= w <= time.time() * 1000 for w in wall)  # milliseconds since the epoch
    assert wall == sorted(wall)

    monitor.log({"loss": 1e-4, "accuracy": 0.5}, step=10)  # a new chart made while log/time are chosen
    viewer.wait_column_length("scalars:axes:loss", "step", 11)
    viewer.wait("() => __find('chart:accuracy') !== null")
    accuracy = chart(viewer, "chart:accuracy")
    assert (accuracy["y_scale"], accuracy["x_axis"]) == ("LogScale", "DatetimeAxis")
    assert [line["x"] for line in accuracy["lines"]] == ["wall", "wall"]
    assert viewer.column("scalars:axes:loss", "value")[-1] == 1e-4  # type: ignore[index]

    viewer.page.evaluate(SET_JS, ["curves-y-scale", "active", 0])
    viewer.page.evaluate(SET_JS, ["curves-x-axis", "active", 0])
    viewer.wait(
        "() => ['chart:loss', 'chart:accuracy'].every((n) => { const f = __find(n);"
        " return f && f.y_scale.type === 'LinearScale' && f.below[0].type === 'LinearAxis' })"
    )
    back = chart(viewer, "chart:loss")
    assert sorted(tuple(line.values()) for line in back["lines"]) == [
        (source, "step", y, 11 if source.endswith(":loss") else 10) for source, _, y, _ in expected_lines
    ]


def test_a_constant_series_gets_a_y_range_around_its_value(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("flat")
    for step in range(5):
        monitor.log({"learning_rate": 0.001, "loss": 1.0 / (step + 1)}, step=step)
    viewer = viewers(server.url + "/?run=flat")
    viewer.wait_column_length("scalars:flat:learning_rate", "step", 5)
    span = """() => { const r = __find('chart:learning rate')?.y_range;
      return r && r.end > r.start && r.end - r.start < 0.01 ? [r.start, r.end] : null }"""
    start, end = viewer.wait(span)
    assert start < 0.001 < end and end - start == pytest.approx(0.0002)  # not BokehJS's -1 .. 1
    loss = viewer.page.evaluate("() => { const r = __find('chart:loss').y_range; return [r.start, r.end] }")
    assert loss[0] < 0.2 and loss[1] > 1.0  # a series with an extent is padded as usual


def predictions_state(viewer: Viewer) -> dict[str, Any]:
    """Which parts of the predictions panel are visible (the layout's children, in order)."""
    js = """() => { const [empty, classes, regression, embedding] = __find('predictions').children;
      const holds = (part, name) => Array.from(part.references()).some((m) => m.name === name);
      return { empty: empty.visible, classification: classes.visible, regression: regression.visible,
               embedding: embedding.visible, classification_holds_slider: holds(classes, 'predictions-slider'),
               regression_holds_source: holds(regression, 'predictions-regression'),
               embedding_holds_source: holds(embedding, 'predictions-embedding') } }"""
    return viewer.page.evaluate(js)  # type: ignore[no-any-return]


def test_regression_predictions_fill_the_scatter_and_the_residual_histogram(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    rng = np.random.default_rng(2)
    y_true = np.linspace(-3.0, 5.0, 60)
    y_pred = y_true + rng.normal(0.0, 0.5, 60)
    monitor = monitors("regress")
    monitor.log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=regress")
    viewer.wait_column_length("scalars:regress:loss", "step", 1)
    viewer.show("Predictions")
    assert predictions_state(viewer)["empty"] is True
    assert "No predictions yet" in (viewer.text("predictions-empty") or "")

    monitor.predictions("validation", y_true, y_pred, step=0, task="regression")
    assert viewer.wait_column_length("predictions-regression", "y_true", 60) == pytest.approx(y_true.tolist())
    assert viewer.column("predictions-regression", "y_pred") == pytest.approx(y_pred.tolist())
    counts, edges = np.histogram(y_pred - y_true, bins=RESIDUAL_BINS)
    assert viewer.wait_column_length("predictions-residuals", "top", RESIDUAL_BINS) == counts.astype(float).tolist()
    assert viewer.column("predictions-residuals", "left") == pytest.approx(edges[:-1].tolist())
    assert viewer.column("predictions-residuals", "right") == pytest.approx(edges[1:].tolist())
    state = predictions_state(viewer)
    assert state == {
        "empty": False, "classification": False, "regression": True, "embedding": False,
        "classification_holds_slider": True, "regression_holds_source": True, "embedding_holds_source": True,
    }  # fmt: skip
    for source, column in (
        ("predictions-classes", "cls"),
        ("predictions-confusion", "count"),
        ("predictions-sample", "prob"),
    ):
        assert viewer.column(source, column) == [], source

    # (n, 2) outputs are flattened point by point; an embedding shows, every point one colour.
    y_true2 = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    y_pred2 = np.array([[0.5, 1.0], [2.0, 2.0], [4.0, 7.0]])
    embedding = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    monitor.predictions("validation", y_true2, y_pred2, step=1, embedding=embedding, task="regression")
    assert viewer.wait_column_length("predictions-embedding", "x", 3) == [0.1, 0.3, 0.5]
    assert viewer.column("predictions-embedding", "y") == [0.2, 0.4, 0.6]
    assert viewer.column("predictions-embedding", "label") == ["0", "0", "0"]
    assert viewer.column("predictions-embedding", "name") == ["", "", ""]  # no classes: no legend entries
    viewer.wait("() => __find('predictions-regression').data.y_true.length === 6")
    assert viewer.column("predictions-regression", "y_true") == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert viewer.column("predictions-regression", "y_pred") == [0.5, 1.0, 2.0, 2.0, 4.0, 7.0]
    counts, edges = np.histogram(y_pred2 - y_true2, bins=RESIDUAL_BINS)
    assert viewer.column("predictions-residuals", "top") == counts.astype(float).tolist()
    assert viewer.column("predictions-residuals", "left") == pytest.approx(edges[:-1].tolist())
    assert predictions_state(viewer)["embedding"] is True
    assert predictions_state(viewer)["classification"] is False


def test_sample_slider_shows_the_chosen_samples_probabilities(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    y_true = np.array([0, 2, 1, 2])
    outputs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4]])
    monitor = monitors("sampled")
    monitor.predictions("validation", y_true, outputs, step=0, classes=["a", "b", "c"])
    viewer = viewers(server.url + "/?run=sampled").show("Predictions")
    assert viewer.wait_column_length("predictions-sample", "prob", 3) == pytest.approx(outputs[0].tolist())
    assert viewer.page.evaluate("() => [__find('predictions-slider').start, __find('predictions-slider').end]") == [
        0,
        3,
    ]
    state = predictions_state(viewer)
    assert (state["classification"], state["regression"], state["empty"]) == (True, False, False)

    green, grey = "#2ca02c", "#7f7f7f"
    for index in (3, 1):
        viewer.page.evaluate(SET_JS, ["predictions-slider", "value", index])
        wait_column_close(viewer, "predictions-sample", "prob", outputs[index].tolist())
        colors = [green if c == y_true[index] else grey for c in range(3)]
        assert viewer.column("predictions-sample", "color") == colors
        assert viewer.column("predictions-sample", "cls") == ["a", "b", "c"]

    # New predictions keep the chosen sample, now showing its new outputs.
    monitor.predictions("validation", y_true, outputs[::-1].copy(), step=1, classes=["a", "b", "c"])
    wait_column_close(viewer, "predictions-sample", "prob", outputs[::-1][1].tolist())


def table_ids(viewer: Viewer) -> list[str]:
    return list(viewer.page.evaluate("() => Array.from(__find('runs-table').data.id)"))


SELECTED_JS = "() => { const t = __find('runs-table'); return t.selected.indices.map((i) => t.data.id[i]).sort() }"


def selected_runs(viewer: Viewer) -> list[str]:
    return list(viewer.page.evaluate(SELECTED_JS))


def test_selecting_rows_in_the_runs_table_overlays_and_switches_runs(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    left, right = monitors("left"), monitors("right")
    left.log({"loss": 1.0}, step=0)
    right.log({"loss": 3.0}, step=0)
    right.log({"loss": 2.0}, step=1)
    viewer = viewers(server.url + "/?run=left")
    viewer.wait_column_length("scalars:left:loss", "step", 1)
    assert viewer.column("scalars:right:loss", "step") is None
    viewer.show("Runs")
    viewer.wait("() => __find('runs-table').data.id.length === 2 && __find('runs-table').selected.indices.length === 1")
    ids = table_ids(viewer)
    assert sorted(ids) == ["left", "right"]
    assert selected_runs(viewer) == ["left"]

    viewer.page.evaluate(SELECT_ROWS_JS, [0, 1])
    viewer.show("Training")
    assert viewer.wait_column_length("scalars:right:loss", "value", 2) == [3.0, 2.0]
    assert viewer.wait_column_length("scalars:left:loss", "value", 1) == [1.0]  # both reload after the reset
    viewer.wait("() => __find('run-picker').value.length === 2")
    assert viewer.page.evaluate("() => Array.from(__find('run-picker').value)") == ids  # table order, newest first
    viewer.wait_text("header-run", ids[0])
    viewer.wait("() => __find('chart:loss')?.renderers.length === 4")  # value and smooth lines of both runs
    sources = viewer.page.evaluate("() => __find('chart:loss').renderers.map((r) => r.data_source.name)")
    assert sorted(set(sources)) == ["scalars:left:loss", "scalars:right:loss"]
    left.log({"loss": 0.5}, step=1)
    assert viewer.wait_column_length("scalars:left:loss", "value", 2) == [1.0, 0.5]

    # A new run arrives at the top of the table; the selection follows the shown runs' rows.
    monitors("newcomer").log({"loss": 9.0}, step=0)
    viewer.show("Runs")
    viewer.wait("() => __find('runs-table').data.id.length === 3")
    assert table_ids(viewer)[0] == "newcomer"
    viewer.wait(f"() => ({SELECTED_JS})().join() === 'left,right'")

    viewer.page.evaluate(SELECT_ROWS_JS, [table_ids(viewer).index("right")])
    viewer.show("Training")
    viewer.wait("() => __find('scalars:left:loss') === null")
    assert viewer.column("scalars:newcomer:loss", "step") is None
    viewer.wait_text("header-run", "right")
    assert viewer.wait_column_length("scalars:right:loss", "value", 2) == [3.0, 2.0]  # history reloads after reset
    assert viewer.page.evaluate("() => Array.from(__find('run-picker').value)") == ["right"]
    viewer.wait("() => __find('chart:loss')?.renderers.length === 2")
    sources = viewer.page.evaluate("() => __find('chart:loss').renderers.map((r) => r.data_source.name)")
    assert sources == ["scalars:right:loss", "scalars:right:loss"]
    viewer.show("Runs")
    assert selected_runs(viewer) == ["right"]


GRID_TOP_JS = """(row) => { const view = [...Bokeh.index.find(__find('runs-datatable'))][0];
  if (row !== null) view.grid.scrollRowToTop(row);
  return view.grid.getViewport().top; }"""
COUNT_PATCHES_JS = """() => { window.__patches = 0;
  __find('runs-table').patching.connect(() => { window.__patches += 1; }); return true; }"""


def test_the_runs_table_stays_where_it_is_scrolled_while_a_run_is_live(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Each patch (a live run's duration and step, every second) scrolled the table back to the selected row."""
    for i in range(40):
        done = monitors(f"old{i:02d}")
        done.log({"loss": 1.0}, step=0)
        done.finish(timeout=10)
    live = monitors("live")
    live.log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=live")
    viewer.show("Runs")
    viewer.wait("() => __find('runs-table').data.id.length === 41 && __find('runs-table').selected.indices.length")
    assert viewer.page.evaluate(GRID_TOP_JS, 30) > 10
    viewer.wait(COUNT_PATCHES_JS)
    for step in range(1, 4):
        live.log({"loss": 1.0 / step}, step=step)
        viewer.wait("(n) => window.__patches >= n", step)
    assert viewer.page.evaluate(GRID_TOP_JS, None) > 10  # where it was scrolled, not back at the live run's row


PICKER_STATE_JS = """() => { const view = [...Bokeh.index.find(__find('run-picker'))][0];
  return [view.choice_el.dropdown.isActive, view.choice_el.input.value]; }"""


def test_the_run_picker_lists_every_run_matching_what_is_typed(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """BokehJS's picker lists 4 matches by default: "sweep" found 4 of 10 runs."""
    for i in range(10):
        monitors(f"sweep-{i}").log({"loss": 1.0}, step=0)
    monitors("other").log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=other")
    viewer.wait("() => __find('run-picker').options.length === 11")
    viewer.page.locator(".choices__input--cloned").click()
    viewer.page.locator(".choices__input--cloned").press_sequentially("sweep")
    listed = viewer.page.locator(".choices__list--dropdown .choices__item--choice:not(.has-no-results)")
    expect(listed).to_have_count(10)  # waits for the list, and fails on 4
    names = sorted(listed.all_inner_texts())
    assert names == [f"sweep-{i}" for i in range(10)], names
    # A run starting meanwhile does not close the list nor wipe the search (BokehJS renders the picker anew).
    monitors("sweep-10").log({"loss": 1.0}, step=0)
    viewer.wait("() => __find('run-picker').options.length === 12")
    assert viewer.page.evaluate(PICKER_STATE_JS) == [True, "sweep"]
    viewer.page.keyboard.press("Escape")  # closed: now it takes the new run
    viewer.wait(f"() => ({PICKER_STATE_JS})()[0] === false")
    viewer.page.locator(".choices__input--cloned").click()
    viewer.page.locator(".choices__input--cloned").press_sequentially("sweep")
    expect(listed).to_have_count(11)


def test_a_run_picked_from_the_keyboard_leaves_the_keyboard_in_the_picker_with_the_runs_table_open(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """The table's row for the picked run is selected by the server: SlickGrid's copy plugin took the focus
    for that (``picker_fix.js`` change 2), and every key typed next went to the table."""
    for name in ("alpha", "beta", "gamma"):
        monitors(name).log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=alpha")
    viewer.wait("() => __find('run-picker').options.length === 3")
    viewer.show("Runs")
    viewer.wait("() => __find('runs-table').selected.indices.length === 1")
    field = viewer.page.locator(".choices__input--cloned")
    field.click()
    field.press_sequentially("beta")
    viewer.page.keyboard.press("Enter")
    viewer.wait(f"() => ({SELECTED_JS})().length === 2")  # the server selected beta's row too
    viewer.page.keyboard.type("gam")  # where the focus is now
    assert viewer.page.evaluate(PICKER_STATE_JS)[1] == "gam"


def _start_one_after_another(monitors: Callable[..., Monitor], *names: str) -> None:
    """Start runs each with a point, each acknowledged before the next: their start times are in this order."""
    for name in names:
        monitor = monitors(name)
        monitor.log({"loss": 1.0}, step=0)
        while monitor.delivery().acked == 0:  # started, by the server's clock, before the next one
            threading.Event().wait(0.01)


def test_the_picker_shows_the_runs_in_the_order_picked_the_primary_first(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Choices.js shows its tags in the options' order, newest run first: the primary could come last."""
    _start_one_after_another(monitors, "older", "newer")
    viewer = viewers(server.url + "/?run=older&run=newer")
    viewer.wait_text("header-run", "older")
    assert viewer.wait(PICKED_TEXT_JS, 2) == ["older", "newer"]


HEADER_HEIGHT_JS = """() => { const view = [...Bokeh.index.find(__find('header'))][0];
  return view ? Math.round(view.el.getBoundingClientRect().height) : 0; }"""


def test_picking_many_runs_does_not_grow_the_header_past_two_rows_of_them(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Each pick past a row made the header taller: five made it 180 px and moved the runs table under the pointer."""
    runs = [f"compare-{i}" for i in range(12)]
    for run in runs:
        monitors(run).log({"loss": 1.0}, step=0)
    heights = []
    for shown in (runs[:1], runs[:8], runs):
        viewer = viewers(server.url + "/?" + "&".join(f"run={run}" for run in shown))
        viewer.wait("(n) => __find('run-picker').value.length === n", len(shown))
        viewer.wait("() => __find('run-picker').options.length === 12")
        heights.append(viewer.wait(HEADER_HEIGHT_JS))
    one, eight, twelve = heights
    assert eight == twelve and eight < 2 * one, heights  # past about two rows, the picked runs scroll


TITLE_TEXT_JS = """(name) => { const plot = [...Bokeh.index.find(__find(name))][0];
  const title = plot ? [...plot.renderer_views.values()].find((view) => view.model.type === "Title") : undefined;
  return title?._text_view ? [title._text_view.model.type, title._text_view.model.text] : null; }"""
PICKED_TEXT_JS = """(count) => { const view = [...Bokeh.index.find(__find('run-picker'))][0];
  const items = view ? [...view.shadow_el.querySelectorAll('.choices__list--multiple .choices__item')] : [];
  return items.length === count ? items.map((item) => item.firstChild.textContent) : null }"""


def test_runs_added_to_a_comparison_are_shown_in_the_order_picked(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Adding runs keeps the runs shown (not a reset): the picker's options were left newest first."""
    _start_one_after_another(monitors, "first", "second", "third")
    viewer = viewers(server.url + "/?run=first")
    viewer.wait_text("header-run", "first")
    viewer.page.evaluate("(runs) => { __find('run-picker').value = runs }", ["first", "second", "third"])
    # The legend names the runs from the message that answers the pick; the options come in it too.
    viewer.wait("() => __find('legend:loss') !== null && __find('legend:loss').text.includes('first · loss')")
    options = viewer.page.evaluate("() => __find('run-picker').options.map((option) => option[0])")
    assert options == ["first", "second", "third"], options  # fails before: newest first, so tags first, third, second
    in_order = f"() => JSON.stringify(({PICKED_TEXT_JS})(3)) === JSON.stringify(['first', 'second', 'third'])"
    viewer.wait(in_order)


def test_names_from_producers_are_shown_as_text_and_never_run_as_html(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Names come from any producer that may connect; a page must show them, not run them.

    The run picker rendered a run's name as HTML (BokehJS 3.9's Choices.js):
    this name ran its script in every open dashboard. Every field a producer
    names something in carries an image whose error handler counts, in two
    compared runs, and every tab is opened; the page must count nothing and
    request no image.
    """
    tag = '<img src=x onerror="window.__ran = (window.__ran || 0) + 1">'
    name = f"{tag}run <b>one</b>"
    first = monitors(name, run="html-run", project=f"{tag}project", config={"note": tag})
    second = monitors(f"{tag}two", run="html-two")
    for monitor in (first, second):
        monitor.log({"loss": 1.0, f"{tag}metric": 2.0, "$$x^2$$": 3.0}, step=0)
        monitor.event(f"{tag} event")
    first.histogram(f"{tag}/kernel", np.arange(10.0), step=0)
    outputs = np.array([[0.9, 0.1], [0.2, 0.8]])
    first.predictions(f"{tag}validation", np.array([0, 1]), outputs, step=0, classes=[f"{tag}a", f"{tag}b"])
    rng = np.random.default_rng(0)
    first.data_summary(
        rng.normal(size=(20, 2)), labels=rng.integers(0, 2, 20), feature_names=[f"{tag}f1", f"{tag}f2"],
        label_names=[f"{tag}yes", f"{tag}no"], name=f"{tag}train",
    )  # fmt: skip
    first.graph(
        [{"name": f"{tag}in", "type": f"{tag}Input", "output_shape": tag, "params": 0, "trainable": 0},
         {"name": f"{tag}dense", "type": "Dense", "output_shape": "(None, 2)", "params": 6, "trainable": 6}],
        [(f"{tag}in", f"{tag}dense")],
    )  # fmt: skip
    viewer = viewers(server.url + "/?run=html-run&run=html-two")
    images: list[str] = []
    viewer.page.on("request", lambda request: images.append(request.url) if request.url.endswith("/x") else None)
    viewer.wait_column_length("scalars:html-two:loss", "step", 1)
    viewer.wait_text("header-run", "run &lt;b&gt;one&lt;/b&gt;")  # HTML that shows the name as written
    assert sorted(viewer.wait(PICKED_TEXT_JS, 2)) == sorted([name, f"{tag}two"])  # in either order
    assert viewer.wait(TITLE_TEXT_JS, "chart:$$x^2$$") == ["PlainText", "$$x^2$$"]  # not TeX, which draws a stub
    drawn = {  # each tab, and a source of it that holds the names once it is drawn
        "Weights": ("weights-current", "top", 10),
        "Predictions": ("predictions-classes", "cls", 2),
        "Data": ("data-labels", "label", 2),
        "Model": ("model-nodes", "name", 2),
        "Runs": ("runs-table", "id", 2),
    }
    for tab, (source, column, length) in drawn.items():
        viewer.show(tab)
        viewer.wait_column_length(source, column, length)
    viewer.page.wait_for_load_state("networkidle")  # an image would be requested, and fail, by now
    assert images == []
    assert viewer.page.evaluate("() => window.__ran ?? null") is None


def test_the_lab_screen_shows_names_as_text_too(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """The lab screen names the tensor and sample it shows in its page line, with no picker to read them from."""
    tag = '<img src=x onerror="window.__ran = 1">'
    monitor = monitors(f"{tag}screen", run="html-screen")
    monitor.log({"loss": 1.0}, step=0)
    monitor.histogram(f"{tag}/kernel", np.arange(10.0), step=0)
    viewer = viewers(server.url + "/?kiosk=1&cycle=2")
    images: list[str] = []
    viewer.page.on("request", lambda request: images.append(request.url) if request.url.endswith("/x") else None)
    viewer.wait_text("header-run", "&lt;img src=x")
    viewer.wait_text("kiosk-pages", "· &lt;img src=x", timeout=30_000)  # the Weights page, naming its tensor
    viewer.page.wait_for_load_state("networkidle")
    assert images == []
    assert viewer.page.evaluate("() => window.__ran ?? null") is None
