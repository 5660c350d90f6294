"""Unit tests of the dashboard's pure parts: grouping, smoothing, percentiles, layout, feed, seam, flat ranges."""

from __future__ import annotations

import base64
import gzip
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, DataRange1d
from bokeh.palettes import Category10_10

from monitor.dashboard import patches
from monitor.dashboard.batch import Batch
from monitor.dashboard.dag import layer_of, layered_layout
from monitor.dashboard.directory import _labels, _read_runs
from monitor.dashboard.feed import Feed
from monitor.dashboard.grouping import group_metrics, is_validation
from monitor.dashboard.history import ALL, RunHistory, after_history, load_history
from monitor.dashboard.panels.base import LOADING_TEXT, Panel
from monitor.dashboard.panels.curves import FLAT_SPAN, ROLLOVER, CurvesPanel
from monitor.dashboard.panels.data import DataPanel
from monitor.dashboard.panels.header import format_age
from monitor.dashboard.panels.model import ModelPanel
from monitor.dashboard.panels.predictions import PredictionsPanel
from monitor.dashboard.panels.weights import WeightsPanel
from monitor.dashboard.patches import INLINE_BYTES, _Batch, _InliningSerializer
from monitor.dashboard.percentiles import histogram_percentiles, resample_counts
from monitor.dashboard.progress import ETA_WINDOW, SPEED_WINDOW, Progress
from monitor.dashboard.smoothing import ema
from monitor.dashboard.theme import look_for
from monitor.hub import Hub, HubMessage
from monitor.store import SQLiteStore
from monitor.store.base import RunInfo, ScalarSeries
from monitor.wire import DataSummary, Event, Graph, GraphNode, Hello, Histogram, Predictions, Scalars


def test_group_metrics_pairs_validation_and_orders_charts() -> None:
    groups = group_metrics(
        ["val_loss", "lr", "loss", "accuracy", "val_accuracy", "zeta", "grad_norm", "epoch", "train/acc2",
         "weights_norm/d/kernel", "weights_norm/d/bias", "gradients_norm/global", "update_ratio/d/kernel"]
    )  # fmt: skip
    assert groups == {
        "loss": ["loss", "val_loss"], "accuracy": ["accuracy", "val_accuracy"], "acc2": ["train/acc2"],
        "update_ratio": ["update_ratio/d/kernel"], "weights_norm": ["weights_norm/d/bias", "weights_norm/d/kernel"],
        "zeta": ["zeta"], "learning rate": ["lr"], "gradient norm": ["grad_norm", "gradients_norm/global"],
    }  # fmt: skip
    assert is_validation("val_loss") and not is_validation("loss")
    keras_tensorboard = ["batch_loss", "epoch_learning_rate", "evaluation_loss_vs_iterations", "epoch_accuracy",
                         "epoch_loss"]  # fmt: skip
    assert list(group_metrics(keras_tensorboard)) == [
        "epoch_loss", "epoch_accuracy", "batch_loss", "evaluation_loss_vs_iterations", "learning rate",
    ]  # fmt: skip


def test_ema_is_debiased_skips_nonfinite_and_continues() -> None:
    values = np.array([1.0, 1.0, np.nan, 1.0])
    smooth, state = ema(values, 0.9)
    assert smooth[[0, 1, 3]] == pytest.approx([1.0, 1.0, 1.0]) and np.isnan(smooth[2])
    whole, _ = ema(np.arange(10.0), 0.6)
    head, cont = ema(np.arange(5.0), 0.6)
    tail, _ = ema(np.arange(5.0, 10.0), 0.6, cont)
    assert np.concatenate([head, tail]) == pytest.approx(whole)
    assert ema(np.array([3.0, 5.0]), 0.0)[0] == pytest.approx([3.0, 5.0])
    with pytest.raises(ValueError, match="smoothing weight"):
        ema(values, 1.0)
    assert state.count == 3


def test_ema_of_a_constant_series_is_exactly_constant() -> None:
    rate = np.full(500, 1e-3)
    smooth, state = ema(rate, 0.6)
    assert (smooth == 1e-3).all()
    more, _ = ema(np.full(10, 1e-3), 0.6, state)
    assert (more == 1e-3).all()
    moving, _ = ema(np.array([1.0, 2.0]), 0.5)
    assert moving[1] != 2.0  # a moving series is still smoothed


def test_histogram_percentiles_interpolate_within_bins() -> None:
    edges, counts = np.linspace(0.0, 4.0, 5), np.array([1.0, 1.0, 1.0, 1.0])
    assert histogram_percentiles(edges, counts, (0.0, 0.5, 1.0)) == pytest.approx([0.0, 2.0, 4.0])
    assert histogram_percentiles(np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0]), (0.0, 0.5)) == pytest.approx(
        [1.0, 1.5]
    )
    assert np.isnan(histogram_percentiles(edges, np.zeros(4))).all()


def test_resample_counts_keeps_mass_on_a_covering_grid() -> None:
    out = resample_counts(np.array([0.0, 1.0, 2.0]), np.array([2.0, 4.0]), np.linspace(0.0, 2.0, 5))
    assert out == pytest.approx([1.0, 1.0, 2.0, 2.0])


def test_layered_layout_rows_by_longest_path_and_survives_cycles() -> None:
    nodes = ["in", "a", "b", "add", "out"]
    edges = [("in", "a"), ("in", "b"), ("a", "add"), ("b", "add"), ("in", "add"), ("add", "out")]
    assert layer_of(nodes, edges) == {"in": 0, "a": 1, "b": 1, "add": 2, "out": 3}
    positions = layered_layout(nodes, edges)
    assert positions["in"] == (0.0, 0.0) and positions["out"] == (0.0, -3.0)
    assert {positions["a"][0], positions["b"][0]} == {-0.5, 0.5}
    assert layer_of(["x", "y"], [("x", "y"), ("y", "x")]) == {"x": 0, "y": 0}


class _Scheduler:
    def __init__(self) -> None:
        self.next_tick: list[Callable[[], None]] = []
        self.timeouts: list[tuple[Callable[[], None], int]] = []

    def add_next_tick_callback(self, callback: Callable[[], None]) -> Any:
        self.next_tick.append(callback)

    def add_timeout_callback(self, callback: Callable[[], None], timeout_milliseconds: int) -> Any:
        self.timeouts.append((callback, timeout_milliseconds))


def _scalars(run: str, seq: int, steps: list[int], names: tuple[str, ...] = ("loss",)) -> Scalars:
    n = len(steps)
    return Scalars(
        run,
        seq,
        names,
        np.array(steps, dtype=np.int64),
        np.zeros(n),
        np.zeros(n, dtype=np.int64),
        np.arange(n, dtype=np.float64),
    )


def test_feed_flushes_first_message_next_tick_then_coalesces_and_unsubscribes() -> None:
    hub, scheduler, now = Hub(), _Scheduler(), [0.0]
    delivered: list[list[HubMessage]] = []
    feed = Feed(hub, scheduler, delivered.append, min_interval=60.0, clock=lambda: now[0])
    feed.follow(["a"])
    hub.publish(_scalars("b", 1, [0]))
    assert not scheduler.next_tick
    hub.publish(_scalars("a", 1, [0]))
    hub.publish(_scalars("a", 2, [1]))
    assert len(scheduler.next_tick) == 1
    scheduler.next_tick.pop()()
    assert [len(batch) for batch in delivered] == [2]
    hub.publish(_scalars("a", 3, [2]))  # the burst allows a second flush at once
    scheduler.next_tick.pop()()
    hub.publish(_scalars("a", 4, [3]))
    assert not scheduler.next_tick and [ms for _, ms in scheduler.timeouts] == [60_000]
    now[0] = 60.0
    scheduler.timeouts.pop()[0]()
    now[0] = 75.0  # a quarter of a token back: the next one is three quarters of an interval away
    hub.publish(_scalars("a", 5, [4]))
    assert [ms for _, ms in scheduler.timeouts] == [45_000]
    assert [len(batch) for batch in delivered] == [2, 1, 1]
    assert hub.subscriber_count == 1
    feed.close()
    assert hub.subscriber_count == 0 and feed.closed


def test_after_history_drops_overlap_per_series_and_keeps_the_rest() -> None:
    history = RunHistory(
        run="a",
        scalars={"loss": ScalarSeries("a", "loss", np.array([0, 1, 2]), np.zeros(3), np.zeros(3))},
        events=[Event("a", 4, 1, 10.0, "info", "saved")],
    )
    both = _scalars("a", 5, [2, 3, 2, 3], names=("loss", "acc"))
    both = Scalars("a", 5, ("loss", "acc"), both.steps, both.wall, np.array([0, 0, 1, 1]), both.values)
    kept = after_history(
        [_scalars("a", 4, [1, 2]), both, Event("a", 4, 1, 10.0, "info", "saved"), Hello("a", "s")], history
    )
    assert len(kept) == 2
    trimmed = kept[0]
    assert isinstance(trimmed, Scalars)
    assert trimmed.steps.tolist() == [3, 2, 3] and trimmed.index.tolist() == [0, 1, 1]
    assert isinstance(kept[1], Hello)


def _sources(panel: Panel) -> dict[str, dict[str, list[Any]]]:
    sources = [m for m in panel.layout.references() if isinstance(m, ColumnDataSource)]
    return {str(m.name): {k: _comparable(v) for k, v in m.data.items()} for m in sources}


def _comparable(column: Any) -> Any:
    """A column as lists, NaN as None (NaN != NaN: the heatmap's unfilled columns)."""
    array = np.asarray(column)
    if array.dtype.kind == "f":
        return np.where(np.isnan(array), None, array).tolist()
    return array.tolist()


def test_a_panel_built_late_reads_only_the_parts_of_the_history_it_draws(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    store.start(lambda run, stream, seq: None)
    try:
        store.open_stream(Hello(run="a", stream="s"))
        names = ("loss", "weights_norm/d/kernel", "update_ratio/d/kernel")
        scalars = Scalars("a", 1, names, np.array([0, 0, 0]), np.zeros(3), np.arange(3), np.ones(3))
        edges, counts = np.linspace(-1, 1, 3), np.array([1.0, 2.0])
        histogram = Histogram("a", 2, "weights/d/kernel", 0, 1.0, edges, counts, -1.0, 1.0, 0.0, 0.5, 3, 0)
        outputs = np.array([[0.9, 0.1], [0.3, 0.7]])
        predictions = Predictions("a", 3, "validation", 0, 1.0, "classification", np.array([0, 1]), outputs)
        summary = DataSummary(
            "a", 4, "train", 0, 1.0, ("height",), np.linspace(0, 1, 3)[None, :], np.array([[2.0, 1.0]]),
            label_names=("no", "yes"), label_counts=np.array([2.0, 1.0]),
        )  # fmt: skip
        layers = (GraphNode("in", "InputLayer"), GraphNode("dense", "Dense", "(None, 2)", 6, 6))
        graph = Graph("a", 5, layers, (("in", "dense"),))
        for message in (scalars, histogram, predictions, summary, graph, Event("a", 6, 0, 1.0, "info", "started")):
            assert store.submit("s", message)
        assert store.flush()
        everything = load_history(store, "a", 100, 10, ALL)
        assert set(everything.scalars) == set(names) and everything.histograms and everything.predictions
        assert everything.events and everything.data and everything.graph is not None
        weights = load_history(store, "a", 100, 10, WeightsPanel.history)
        assert set(weights.scalars) == {"weights_norm/d/kernel", "update_ratio/d/kernel"}
        assert list(weights.histograms) == ["weights/d/kernel"]
        assert not weights.predictions and not weights.events and weights.info is not None
        shown = load_history(store, "a", 100, 10, PredictionsPanel.history)
        assert not shown.scalars and not shown.histograms and len(shown.predictions) == 1
        # What a panel draws from its parts is what it draws from the whole history.
        look = look_for(False, dark=False)
        for make in (WeightsPanel, PredictionsPanel, DataPanel, ModelPanel):
            whole, part = make(look), make(look)
            for panel, history in ((whole, everything), (part, load_history(store, "a", 100, 10, make.history))):
                panel.reset(["a"])
                panel.load(history)
            assert _sources(part) == _sources(whole), make.__name__
            assert any(any(len(column) for column in data.values()) for data in _sources(part).values())
    finally:
        store.close()


def test_every_run_s_best_value_is_read_from_the_store_a_few_runs_per_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart only the newest 100 runs got a best value; the rest of a long list never did."""
    monkeypatch.setattr("monitor.dashboard.directory._SEED_RUNS", 2)
    store = SQLiteStore(tmp_path / "runs.db")
    store.start(lambda run, stream, seq: None)
    try:
        for i in range(5):
            store.open_stream(Hello(run=f"r{i}", stream=f"s{i}"))
            loss = Scalars(f"r{i}", 1, ("loss",), np.arange(2), np.ones(2), np.zeros(2, np.int32), np.array([3.0, i]))
            assert store.submit(f"s{i}", loss)
        assert store.flush()
        read: set[str] = set()
        for _ in range(3):  # three refreshes of two runs each
            infos, bests = _read_runs(store, read)
            assert len(infos) == 5 and len(bests) <= 2 and not read & set(bests)
            read |= set(bests)
        assert {run: best["loss"] for run, best in _read_runs(store, set())[1].items()} == {"r4": 3.0, "r3": 3.0}
        assert read == {f"r{i}" for i in range(5)}
        scalars = store.scalars

        def broken(run: str, name: str, **kwargs: Any) -> ScalarSeries:
            if run == "r4":
                raise RuntimeError("disk on fire")
            return scalars(run, name, **kwargs)

        monkeypatch.setattr(store, "scalars", broken)
        assert _read_runs(store, set())[1] == {"r4": {}, "r3": {"loss": 3.0}}  # one unreadable run, not the list
        monkeypatch.setattr(store, "scalars", scalars)
        store.open_stream(Hello(run="keras-tb", stream="tb"))  # Keras's TensorBoard names, as import-tb brings them
        values = np.array([0.9, 0.4, 0.6])
        epoch_loss = Scalars("keras-tb", 1, ("epoch_loss",), np.arange(3), np.ones(3), np.zeros(3, np.int32), values)
        assert store.submit("tb", epoch_loss) and store.flush()
        assert _read_runs(store, set())[1]["keras-tb"] == {"epoch_loss": 0.4}
    finally:
        store.close()


def test_a_line_flat_since_its_varied_points_rolled_off_gets_a_span_around_its_value() -> None:
    panel = CurvesPanel(look_for(False, dark=False), str)
    panel.reset(["r"])
    warmup = _scalars("r", 1, list(range(5)), ("learning_rate",))  # values 0..4
    panel.update(Batch.of([warmup]))
    y_range = panel._charts["learning rate"].fig.y_range
    assert isinstance(y_range, DataRange1d)
    assert y_range.default_span == 2.0  # BokehJS's default: a real extent is padded by BokehJS itself
    steps = np.arange(5, 5 + ROLLOVER)
    n = len(steps)
    flat = Scalars("r", 2, ("learning_rate",), steps, np.zeros(n), np.zeros(n, dtype=np.int64), np.full(n, 0.001))
    panel.update(Batch.of([flat]))
    assert y_range.default_span == pytest.approx(FLAT_SPAN * 0.001)  # the warm-up rolled off


def test_patches_inline_small_arrays_and_send_large_ones_as_buffers() -> None:
    """Arrays up to ``INLINE_BYTES`` (bytes, not items) go inside the message; larger ones as binary frames."""
    serializer = _InliningSerializer()
    small = serializer.encode(np.arange(100.0))
    large = serializer.encode(np.arange(INLINE_BYTES // 8 + 1, dtype=np.float64))
    image = serializer.encode(np.zeros((50, 400)))  # 2-D: 160 KB over only 50 rows
    assert isinstance(small["array"]["data"], str)
    assert not isinstance(large["array"]["data"], str) and not isinstance(image["array"]["data"], str)
    assert len(serializer.buffers) == 2
    # BokehJS reads inline bytes as base64 of gzip (``base64_to_buffer``): they must come back whole.
    inline = gzip.decompress(base64.b64decode(small["array"]["data"]))
    assert np.array_equal(np.frombuffer(inline, dtype=np.float64), np.arange(100.0))


def test_patches_name_the_models_the_page_has_and_send_new_ones_whole() -> None:
    known, new = ColumnDataSource(data={"x": [1.0]}), ColumnDataSource(data={"x": [2.0]})
    serializer = _InliningSerializer(references={known})
    # The page has it, named or not yet: ``_Batch.sent`` asks before anything names it.
    assert serializer.has_ref(known) and not serializer.has_ref(new)
    assert serializer.encode(known) == known.ref
    whole = serializer.encode(new)
    assert whole["id"] == new.id and "attributes" in whole
    assert serializer.encode(new) == new.ref and serializer.has_ref(new)  # sent once: named after that


def test_progress_counts_steps_done_from_zero_or_one() -> None:
    zero, one = Progress(), Progress()
    zero.note(np.arange(0, 300), np.arange(300.0))
    one.note(np.arange(1, 301), np.arange(300.0))
    assert (zero.step, zero.done()) == (299, 300)
    assert (one.step, one.done()) == (300, 300)
    late = Progress()  # a history loaded in two parts: the run's first step arrives after its newest
    late.note(np.array([500, 900]), np.array([50.0, 90.0]))
    late.note(np.array([0]), np.array([0.0]))
    assert (late.step, late.done()) == (900, 901)


def test_progress_ignores_points_without_a_time() -> None:
    progress = Progress()
    progress.note(np.array([1, 2, 3]), np.array([1.0, np.nan, 3.0]))
    progress.note(np.array([4]), np.array([np.inf]))
    assert progress.step == 3 and progress.rate(SPEED_WINDOW) == pytest.approx(1.0)


def test_the_eta_rate_takes_in_pauses_every_epoch_without_jumping_at_each() -> None:
    progress = Progress()
    speeds, etas, wall, step = [], [], 0.0, 0
    for _epoch in range(40):  # 50 s at 10 steps/s, then a 20 s validation pause
        for _ in range(50):
            wall, step = wall + 1.0, step + 10
            progress.note(np.array([step]), np.array([wall]))
            if wall > ETA_WINDOW + 100:
                speeds.append(progress.rate(SPEED_WINDOW) or 0.0)
                etas.append(progress.rate(ETA_WINDOW) or 0.0)
        wall += 20.0
    average = 500 / 70
    assert min(etas) == pytest.approx(average, rel=0.05) and max(etas) == pytest.approx(average, rel=0.05)
    assert max(speeds) / min(speeds) > 1.3  # the 30 s window swings with the pauses; the ETA's does not


def _line_colors(panel: CurvesPanel, chart: str) -> dict[str, str]:
    """Label -> colour of each smoothed line of ``chart`` (the raw line under it has no name)."""
    renderers = panel._charts[chart].fig.renderers
    return {r.name: r.glyph.line_color for r in renderers if r.name}


def _each(run: str, names: tuple[str, ...]) -> Scalars:
    """One point of each of ``names`` at step 0."""
    n = len(names)
    return Scalars(run, 1, names, np.zeros(n, np.int64), np.zeros(n), np.arange(n, dtype=np.int64), np.ones(n))


def test_one_run_colours_each_series_and_compared_runs_colour_each_run() -> None:
    names = ("loss", "val_loss", "weights_norm/a", "weights_norm/b", "weights_norm/c")
    single = CurvesPanel(look_for(False, dark=False), str)
    single.reset(["r"])
    single.update(Batch.of([_each("r", names)]))
    loss = _line_colors(single, "loss")
    assert loss["loss"] == loss["val_loss"]  # a metric and its validation share a colour (val is dashed)
    norms = _line_colors(single, "weights_norm")
    assert len(set(norms.values())) == 3, norms  # one colour per tensor, not the run's for all
    compared = CurvesPanel(look_for(False, dark=False), str)
    compared.reset(["r", "s"])
    compared.update(Batch.of([_each("r", names[2:4]), _each("s", names[2:4])]))
    by_run = _line_colors(compared, "weights_norm")
    assert by_run["r · weights_norm/a"] == by_run["r · weights_norm/b"] != by_run["s · weights_norm/a"]


def test_no_two_lines_of_a_chart_share_a_colour_past_ten_runs_or_twenty_series() -> None:
    runs = [f"r{i}" for i in range(12)]
    compared = CurvesPanel(look_for(False, dark=False), str)
    compared.reset(runs)
    compared.update(Batch.of([_each(run, ("loss",)) for run in runs]))
    by_run = _line_colors(compared, "loss")
    assert len(set(by_run.values())) == 12, by_run  # the 11th and 12th run took the 1st's and 2nd's
    assert [by_run[f"r{i} · loss"] for i in range(10)] == list(Category10_10)  # the first ten as ever
    norms = tuple(f"gradients/layer{i}" for i in range(33))
    single = CurvesPanel(look_for(False, dark=False), str)
    single.reset(["r"])
    single.update(Batch.of([_each("r", norms)]))
    assert len(set(_line_colors(single, "gradients").values())) == 33


def test_runs_sharing_a_name_are_told_apart_by_start_time_then_id() -> None:
    at = time.mktime((2026, 11, 29, 14, 58, 21, 0, 0, -1))
    infos = [
        RunInfo("a1", "digits", "", "running", at, at),
        RunInfo("a2", "digits", "", "running", at + 60, at + 60),
        RunInfo("b", "other", "", "running", at, at),
        RunInfo("c1", "", "", "running", at, at),
        RunInfo("twin1", "twin", "", "running", at, at),
        RunInfo("twin2", "twin", "", "running", at, at),
    ]
    assert _labels(infos) == {
        "a1": "digits · 11-29 14:58:21", "a2": "digits · 11-29 14:59:21", "b": "other", "c1": "c1",
        "twin1": "twin · 11-29 14:58:21 · twin1", "twin2": "twin · 11-29 14:58:21 · twin2",
    }  # fmt: skip


def test_a_chart_comparing_runs_of_many_series_lists_the_runs_in_its_legend() -> None:
    tensors = tuple(f"weights_norm/layer{i}" for i in range(5))
    panel = CurvesPanel(look_for(False, dark=False), str)
    panel.reset(["r", "s"])
    panel.update(Batch.of([_each("r", (*tensors, "loss")), _each("s", (*tensors, "loss"))]))
    many = panel._charts["weights_norm"].legend.text  # ten lines: one entry per run
    assert "r (5 series)" in many and "s (5 series)" in many and "layer0" not in many
    few = panel._charts["loss"].legend.text  # two lines: one entry each
    assert "r · loss" in few and "s · loss" in few


def test_a_run_added_to_a_comparison_and_dropped_again_keeps_the_charts_and_lines_shown() -> None:
    panel = CurvesPanel(look_for(False, dark=False), str)
    panel.reset(["r"])
    panel.update(Batch.of([_each("r", ("loss", "val_loss", "accuracy"))]))
    loss, source = panel._charts["loss"], panel._lines["r", "loss"].source
    alone = _line_colors(panel, "loss")
    assert set(alone) == {"loss", "val_loss"}

    assert panel.compare(["r", "s"])  # kept: the run's lines take its run's colour and name it
    assert panel._charts["loss"] is loss and panel._lines["r", "loss"].source is source
    assert set(_line_colors(panel, "loss")) == {"r · loss", "r · val_loss"}
    panel.update(Batch.of([_each("s", ("loss", "perplexity"))]))  # the added run's lines join the same figures
    assert panel._charts["loss"] is loss and set(panel._charts) == {"loss", "accuracy", "perplexity"}
    both = _line_colors(panel, "loss")
    assert set(both) == {"r · loss", "r · val_loss", "s · loss"}
    assert both["r · loss"] == both["r · val_loss"] != both["s · loss"]
    assert len(loss.hover.renderers) == 3 and len(loss.fig.renderers) == 6  # raw and smoothed, per line
    assert "s · loss" in loss.legend.text

    assert panel.compare(["r"])  # dropped: its lines and its own chart go, the rest stays
    assert panel._charts["loss"] is loss and set(panel._charts) == {"loss", "accuracy"}
    assert _line_colors(panel, "loss") == alone and len(loss.fig.renderers) == 4
    assert len(loss.hover.renderers) == 2 and "s · loss" not in loss.legend.text
    assert ("s", "loss") not in panel._lines


def _history(run: str, name: str = "loss", points: int = 50) -> RunHistory:
    steps = np.arange(points)
    return RunHistory(run, scalars={name: ScalarSeries(run, name, steps, steps * 1.0, np.linspace(1, 0, points))})


def _sent_whole(doc: Document, change: Callable[[], None]) -> Counter[str]:
    """How many times each model goes whole in the messages of one batch (``OnePatch``) of ``change``."""
    batch = _Batch(doc, SimpleNamespace(_current_patch_connection=None))  # type: ignore[arg-type]  # no session
    doc.on_change(batch.add)
    token = patches._batch.set(batch)
    try:
        change()
    finally:
        patches._batch.reset(token)
        doc.remove_on_change(batch.add)
    batch._close()
    whole: Counter[str] = Counter()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "object" and "attributes" in value:
                whole[value["id"]] += 1
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for message, _skip in batch._messages:
        walk(message.content)
    return whole


def test_a_run_added_to_charts_on_the_page_sends_each_model_once_and_nothing_twice() -> None:
    doc = Document()
    panel = CurvesPanel(look_for(False, dark=False), str)
    doc.add_root(panel.layout)
    panel.reset(["r"])
    panel.load(_history("r"))
    doc.models.flush_synced()  # all on the page
    on_page = {model.id for model in doc.models}
    panel.compare(["r", "s"])
    added = _sent_whole(doc, lambda: panel.load(_history("s")))
    assert added and max(added.values()) == 1, added  # the new line went whole twice: renderers, then hover
    assert not set(added) & on_page
    panel.y_scale.active = 1  # a page's own change: outside any batch, Bokeh sends the rebuilt chart itself
    rebuilt = {model.id for model in doc.models}
    again = _sent_whole(doc, lambda: panel.load(_history("r", "accuracy")))  # a new chart joins the grid
    assert not set(again) & rebuilt, "charts already on the page were sent whole again"


def test_the_embedding_is_sent_in_class_order_with_class_names_for_its_legend() -> None:
    panel = PredictionsPanel(look_for(False, dark=False))
    panel.reset(["r"])
    y_true = np.array([2, 0, 1, 0])
    outputs = np.eye(3)[y_true]
    embedding = np.array([[2.0, 2.0], [0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    panel.update(
        Batch.of(
            [Predictions("r", 1, "val", 0, 0.0, "classification", y_true, outputs, ("cat", "dog", "eel"), embedding)]
        )
    )
    assert panel.embedding.data["name"] == ["cat", "cat", "dog", "eel"]
    assert panel.embedding.data["label"] == ["0", "0", "1", "2"]
    assert panel.embedding.data["x"].tolist() == [0.0, 0.5, 1.0, 2.0]  # each point keeps its own coordinates


def test_classes_past_the_tenth_colour_share_one_grey_legend_entry() -> None:
    panel = PredictionsPanel(look_for(False, dark=False))
    panel.reset(["r"])
    y_true = np.array([12, 0, 10, 9, 12])
    outputs = np.eye(13)[y_true]
    classes = tuple(f"c{i}" for i in range(13))
    embedding = np.arange(10.0).reshape(5, 2)
    panel.update(Batch.of([Predictions("r", 1, "val", 0, 0.0, "classification", y_true, outputs, classes, embedding)]))
    assert panel.embedding.data["name"] == ["c0", "c9", "2 other classes", "2 other classes", "2 other classes"]
    assert panel.embedding.data["label"] == ["0", "9", "10", "12", "12"]  # colours: 10 and 12 get none


def test_an_empty_panel_says_it_is_loading_until_the_history_is_drawn() -> None:
    panel = CurvesPanel(look_for(False, dark=False), str)
    panel.reset(["r"])
    panel.loading(True)
    assert LOADING_TEXT in panel.layout.children[1].text
    panel.loading(False)
    assert "No training curves yet" in panel.layout.children[1].text


def test_the_weights_tab_opens_on_a_weight_and_lists_weights_before_gradients() -> None:
    """``MonitorCallback(gradients=True)`` names gradients ``gradients/...``: sorted by name they came first."""
    panel = WeightsPanel(look_for(kiosk=False, dark=False))
    panel.reset(["r"])
    edges, counts = np.linspace(-1, 1, 3), np.array([1.0, 2.0])
    names = ("gradients/classes/bias", "weights/conv1/kernel", "weights/classes/bias")
    histograms = [Histogram("r", 2, name, 0, 1.0, edges, counts, -1.0, 1.0, 0.0, 0.5, 3, 0) for name in names]
    panel.update(Batch.of(histograms))
    assert list(panel.layer.options) == ["weights/classes/bias", "weights/conv1/kernel", "gradients/classes/bias"]
    assert panel.layer.value == "weights/classes/bias"


def test_ages_read_in_the_largest_units_that_fit() -> None:
    ages = [None, 3, 245, 7_800, 47 * 3600 + 59 * 60, 2 * 86400, 1111 * 86400 + 7 * 3600 + 59]
    assert [format_age(a) for a in ages] == ["-", "3s", "4m 05s", "2h 10m", "47h 59m", "2d 00h", "1111d 07h"]
