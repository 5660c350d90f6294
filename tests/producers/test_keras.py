"""MonitorCallback against a real labscreen server, with real TensorFlow training.

Synchronisation: ``fit`` returns after ``on_train_end`` has finished the run,
and ``Monitor.finish`` returns once the server acknowledged (persisted) every
frame, so the store can be read right after ``fit``. Models are tiny and
trained for two short epochs so the file runs in well under a minute.

Heavy snapshots (weights, gradients, predictions) may be skipped when the
callback's worker thread falls behind (a loaded machine): the tests check
that every snapshot the callback reports as sent arrived, that sent and
skipped together cover every due step, and that skips were reported as events.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tensorflow as tf

from monitor.dashboard.panels.base import LOADING_TEXT
from monitor.store.base import RunStore
from producers import items
from producers.client import Monitor
from producers.keras import MonitorCallback
from producers.keras_run import variable_name
from tests.serving import ServerThread, free_port

pytestmark = pytest.mark.tf

BATCH, SAMPLES, EPOCHS = 16, 96, 2
STEPS = EPOCHS * SAMPLES // BATCH


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    thread = ServerThread(tmp_path / "store.sqlite").start()
    yield thread
    thread.stop()


def store_of(server: ServerThread) -> RunStore:
    store: RunStore = server.running.store
    return store


def only_run(store: RunStore) -> str:
    runs = store.list_runs()
    assert len(runs) == 1, runs
    return runs[0].id


def tabular(seed: int = 0, features: int = 6, classes: int = 3) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, features)).astype("float32")
    return x, (np.abs(x[:, 0] * 2).astype("int64") % classes)


def mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(model: keras.Model, x: Any, y: Any, callback: MonitorCallback, **kwargs: Any) -> keras.callbacks.History:
    return model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[callback], **kwargs)


def assert_scalars_every_batch(store: RunStore, run: str, names: list[str]) -> None:
    for name in names:
        series = store.scalars(run, name)
        assert series.steps.tolist() == list(range(1, STEPS + 1)), name


def sent_snapshots(
    store: RunStore, run: str, callback: MonitorCallback, kind: str, every: int, *, steps: int = STEPS
) -> list[int]:
    """Steps of ``kind`` the callback sent; checks that the rest of the due steps were skipped and reported.

    Due: every ``every`` steps, and the last step (when training ends).
    """
    report = callback.snapshots
    sent, skipped = report.sent.get(kind, []), report.skipped.get(kind, [])
    assert not report.failed.get(kind) and not report.unsent.get(kind), report
    due = sorted({*range(every, steps + 1, every), steps})
    assert sorted(sent + skipped) == due, report
    assert sent, f"every {kind} snapshot was skipped: {report}"
    if skipped:
        texts = " ".join(e.text for e in store.events(run))
        assert f"skipped the {kind} snapshot at step {skipped[0]}" in texts, texts
        assert f"skipped because the worker thread was behind: {report.describe('skipped')}" in texts, texts
    return sent


def assert_weight_histograms(
    store: RunStore, run: str, model: keras.Model, callback: MonitorCallback, every: int, *, steps: int = STEPS
) -> None:
    """A histogram of every trainable variable at exactly the steps the callback reports as sent."""
    sent = sent_snapshots(store, run, callback, "weights", every, steps=steps)
    expected = {f"weights/{variable_name(model, v)}" for v in model.trainable_variables}
    assert expected <= set(store.histogram_names(run))
    for name in expected:
        assert [h.step for h in store.histograms(run, name)] == sent, name


def assert_graph(store: RunStore, run: str, names: set[str], edges: set[tuple[str, str]]) -> None:
    graph = store.graph(run)
    assert graph is not None
    assert {n.name for n in graph.nodes} == names
    assert set(graph.edges) == edges


def test_mlp_classifier_lands_everything(server: ServerThread) -> None:
    x, y = tabular()
    model = mlp()
    callback = MonitorCallback(
        server.url, name="mlp", histograms_every=4, predictions=(x[:20], y[:20]), predictions_every=3,
        classes=["a", "b", "c"], embedding_layer="hidden", gradients=True, batch_size=BATCH,
    )  # fmt: skip
    fit(model, x, y, callback, validation_split=0.25)
    store = store_of(server)
    run = only_run(store)
    info = store.get_run(run)
    assert info.status == "finished"
    assert info.config["epochs"] == EPOCHS and info.config["params_trainable"] == model.count_params()
    assert info.config["optimizer"]["class"] == "Adam" and info.config["batch_size"] == BATCH
    steps = EPOCHS * int(np.ceil(72 / BATCH))
    assert store.scalars(run, "loss").steps.tolist() == list(range(1, steps + 1))
    for name in ("accuracy", "learning_rate", "step_time", "samples_per_sec", "epoch"):
        assert len(store.scalars(run, name).steps) == steps, name
    assert len(store.scalars(run, "val_loss").steps) == EPOCHS
    assert_weight_histograms(store, run, model, callback, 4, steps=steps)
    gradients = sent_snapshots(store, run, callback, "gradients", 4, steps=steps)
    assert [h.step for h in store.histograms(run, "gradients/out/bias")] == gradients
    assert store.histograms(run, "gradients/out/bias")[-1].max != 0.0
    weights = callback.snapshots.sent["weights"]
    assert len(store.scalars(run, "update_ratio/hidden/kernel").steps) == len(weights) - 1
    latest = store.predictions(run, limit=100)
    assert [p.step for p in latest] == sent_snapshots(store, run, callback, "predictions", 3, steps=steps)
    assert latest[-1].outputs.shape == (20, 3) and latest[-1].classes == ("a", "b", "c")
    assert latest[-1].embedding is not None and latest[-1].embedding.shape == (20, 2)
    np.testing.assert_allclose(latest[-1].outputs.sum(axis=1), 1.0, rtol=1e-5)
    assert_graph(store, run, {"hidden", "out"}, {("hidden", "out")})
    summary = store.data_summaries(run)[0]
    assert summary.counts.shape == (6, 32) and summary.label_counts is not None
    assert summary.label_counts.sum() == 20


def test_a_fit_shorter_than_the_snapshot_interval_still_sends_the_final_state(server: ServerThread) -> None:
    x, y = tabular()
    model = mlp()
    callback = MonitorCallback(server.url, histograms_every=50, predictions=(x[:8], y[:8]), predictions_every=100)
    fit(model, x, y, callback)  # STEPS batches, fewer than either interval
    store = store_of(server)
    run = only_run(store)
    assert_weight_histograms(store, run, model, callback, 50)  # at STEPS only
    assert [p.step for p in store.predictions(run)] == [STEPS]
    final = model.get_layer("out").bias.numpy()
    histogram = store.histograms(run, "weights/out/bias")[-1]
    assert histogram.min == pytest.approx(final.min()) and histogram.max == pytest.approx(final.max())


def test_steps_per_execution_counts_every_batch_and_takes_snapshots_when_due(server: ServerThread) -> None:
    """With ``compile(steps_per_execution=4)`` Keras calls back once per four batches (fewer at an epoch's end).

    Before, each call counted as one step: loss landed at steps 1-4 of 12,
    and a histogram was taken only when a call's count hit a multiple.
    """
    x, y = tabular()
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=4)
    callback = MonitorCallback(server.url, name="spe", histograms_every=4)
    reports = []
    for _ in range(2):  # a second fit goes on from the optimizer's count
        fit(model, x, y, callback)  # six batches an epoch: calls of 4 and 2
        reports.append(callback.snapshots)
    store = store_of(server)
    runs = [r.id for r in store.list_runs()]
    steps = sorted(s for run in runs for s in store.scalars(run, "loss").steps.tolist())
    assert steps == [4, 6, 10, 12, 16, 18, 22, 24]
    assert int(model.optimizer.iterations.numpy()) == 24
    # Due when a multiple of 4 was passed, and at each fit's end; a loaded machine's worker may skip one,
    # which the report says (as the other snapshot tests allow).
    due = [step for report in reports for step in report.sent.get("weights", []) + report.skipped.get("weights", [])]
    assert sorted(due) == [4, 10, 12, 16, 22, 24]
    sent = sorted(step for report in reports for step in report.sent.get("weights", []))
    assert sorted(h.step for run in runs for h in store.histograms(run, "weights/out/bias")) == sent


def test_a_callback_reused_for_a_fresh_model_sends_that_fit_s_final_snapshot_too(server: ServerThread) -> None:
    """Cross-validation folds: each fit of a fresh model ends at the same step, and each gets its final state."""
    x, y = tabular()
    callback = MonitorCallback(server.url, histograms_every=100, predictions=(x[:8], y[:8]), predictions_every=100)
    for _ in range(2):
        fit(mlp(), x, y, callback)
    store = store_of(server)
    runs = [r.id for r in store.list_runs()]
    assert len(runs) == 2
    for run in runs:
        assert [h.step for h in store.histograms(run, "weights/out/bias")] == [STEPS]
        assert [p.step for p in store.predictions(run)] == [STEPS]


def test_complex_tensors_are_refused_as_metric_values() -> None:
    with pytest.raises(TypeError, match="real number"):
        items.number(tf.constant(1 + 1j), "loss")


def test_small_cnn(server: ServerThread) -> None:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).random((SAMPLES, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int64")
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.MaxPooling2D(name="pool"), keras.layers.Flatten(name="flat"),
        keras.layers.Dense(2, activation="softmax", name="out"),
    ])  # fmt: skip
    model.compile("sgd", "sparse_categorical_crossentropy")
    callback = MonitorCallback(server.url, histograms_every=3, predictions=(x[:10], y[:10]), predictions_every=4)
    fit(model, x, y, callback)
    store = store_of(server)
    run = only_run(store)
    assert_scalars_every_batch(store, run, ["loss", "learning_rate"])
    assert_weight_histograms(store, run, model, callback, 3)
    assert store.predictions(run)[-1].outputs.shape == (10, 2)
    assert_graph(store, run, {"conv", "pool", "flat", "out"}, {("conv", "pool"), ("pool", "flat"), ("flat", "out")})
    summaries = {s.name: s for s in store.data_summaries(run)}
    assert set(summaries) == {"monitor sample", "monitor sample/pixels"}  # no data=: the predictions sample
    assert summaries["monitor sample"].feature_names == ("mean intensity", "std intensity")
    labels = summaries["monitor sample"].label_counts
    assert labels is not None and labels.sum() == 10


def test_two_input_functional_with_shared_layer(server: ServerThread) -> None:
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = keras.layers.Dense(5, name="shared")
    merged = keras.layers.Concatenate(name="cat")([shared(a), shared(b)])
    model = keras.Model([a, b], keras.layers.Dense(1, name="out")(merged))
    model.compile("adam", "mse")
    rng = np.random.default_rng(2)
    xa, xb = rng.normal(size=(SAMPLES, 4)).astype("float32"), rng.normal(size=(SAMPLES, 4)).astype("float32")
    y = (xa.sum(axis=1) - xb.sum(axis=1)).astype("float32")
    callback = MonitorCallback(server.url, histograms_every=6, predictions=([xa[:12], xb[:12]], y[:12]))
    fit(model, [xa, xb], y, callback)
    store = store_of(server)
    run = only_run(store)
    assert_scalars_every_batch(store, run, ["loss"])
    assert_weight_histograms(store, run, model, callback, 6)
    nodes = {"a", "b", "shared", "cat", "out"}
    assert_graph(store, run, nodes, {("a", "shared"), ("b", "shared"), ("shared", "cat"), ("cat", "out")})
    assert {s.name for s in store.data_summaries(run)} == {"monitor sample/0", "monitor sample/1"}


class Residual(keras.Model):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.inner = keras.layers.Dense(6, activation="relu")
        self.head = keras.layers.Dense(3, activation="softmax")

    def call(self, x: Any) -> Any:
        return self.head(self.inner(x) + x)


def test_subclassed_model_sends_its_layer_list(server: ServerThread) -> None:
    keras.utils.set_random_seed(0)
    x, y = tabular(3)
    model = Residual()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = MonitorCallback(server.url, histograms_every=4, predictions=(x[:8], y[:8]), predictions_every=6)
    fit(model, x, y, callback)
    store = store_of(server)
    run = only_run(store)
    assert_scalars_every_batch(store, run, ["loss", "accuracy"])
    assert_weight_histograms(store, run, model, callback, 4)
    sent = sent_snapshots(store, run, callback, "predictions", 6)
    assert [p.outputs.shape for p in store.predictions(run, limit=10)] == [(8, 3)] * len(sent)
    assert_graph(store, run, {layer.name for layer in model.layers}, set())


def test_regressor_predictions_match_targets(server: ServerThread) -> None:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(4).normal(size=(SAMPLES, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5])).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="linear")])
    model.compile(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5)), "mse")
    callback = MonitorCallback(server.url, histograms_every=12, predictions=(x[:16], y[:16]), predictions_every=6)
    fit(model, x, y, callback)
    store = store_of(server)
    run = only_run(store)
    assert_weight_histograms(store, run, model, callback, 12)
    latest = store.predictions(run)[-1]
    assert latest.task == "regression" and latest.outputs.shape == latest.y_true.shape == (16,)
    rates = store.scalars(run, "learning_rate")
    np.testing.assert_allclose(rates.values, 0.1 * 0.5 ** ((rates.steps - 1) / 4), rtol=1e-5)
    summary = store.data_summaries(run)[0]
    assert summary.feature_names == ("x0", "x1", "x2", "target")


def test_no_server_costs_a_warning_at_start_and_one_at_the_end_and_no_steps(caplog: pytest.LogCaptureFixture) -> None:
    x, y = tabular()
    model = mlp()
    callback = MonitorCallback(f"http://127.0.0.1:{free_port()}", histograms_every=2, finish_timeout=0.5,
                               predictions=(x[:8], y[:8]), predictions_every=2)  # fmt: skip
    with caplog.at_level(logging.WARNING):
        fit(model, x, y, callback)
    assert int(model.optimizer.iterations) == STEPS
    labscreen = [r for r in caplog.records if r.name.startswith(("producers", "monitor"))]
    unreachable, loss = (r.getMessage() for r in labscreen)  # not one per batch or per retry
    assert "cannot reach" in unreachable and "were not delivered" in loss


class StopServer(keras.callbacks.Callback):  # type: ignore[misc]
    """Kills the server after one batch and brings it back a few batches later."""

    def __init__(self, server: ServerThread, stop_at: int, start_at: int) -> None:
        super().__init__()
        self.server, self.stop_at, self.start_at, self.seen = server, stop_at, start_at, 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen += 1
        if self.seen == self.stop_at:
            self.server.stop()
        elif self.seen == self.start_at:
            self.server.start()


def test_server_killed_and_restarted_loses_nothing(server: ServerThread) -> None:
    x, y = tabular()
    model = mlp()
    callback = MonitorCallback(server.url, histograms_every=2, predictions=(x[:8], y[:8]), predictions_every=2)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0,
              callbacks=[callback, StopServer(server, 3, STEPS - 2)])  # fmt: skip
    store = store_of(server)
    run = only_run(store)
    assert store.get_run(run).status == "finished"
    assert_scalars_every_batch(store, run, ["loss", "accuracy"])
    assert_weight_histograms(store, run, model, callback, 2)
    sent = sent_snapshots(store, run, callback, "predictions", 2)
    assert [p.step for p in store.predictions(run, limit=100)] == sent


def nan_data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, _ = tabular()
    y = np.zeros((SAMPLES, 1), "float32")
    y[BATCH * 2 :] = np.nan
    return x, y


def regressor() -> keras.Model:
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


@pytest.mark.parametrize("stop", [False, True])
def test_nan_loss_sends_an_event_and_can_stop(server: ServerThread, stop: bool) -> None:
    x, y = nan_data()
    model = regressor()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=False,
              callbacks=[MonitorCallback(server.url, stop_on_nan=stop)])  # fmt: skip
    store = store_of(server)
    run = only_run(store)
    nan_events = [e for e in store.events(run) if "loss is nan" in e.text]
    assert [(e.text.split(" - ")[0], e.step) for e in nan_events] == [("loss is nan at step 3", 3)], nan_events
    assert int(model.optimizer.iterations) == (3 if stop else STEPS)


class Exploding(keras.utils.PyDataset):  # type: ignore[misc]
    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.x, self.y = tabular()
        self.fail_at = fail_at

    def __len__(self) -> int:
        return SAMPLES // BATCH

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if index == self.fail_at:
            raise RuntimeError("disk on fire")
        return self.x[index * BATCH : (index + 1) * BATCH], self.y[index * BATCH : (index + 1) * BATCH]


def test_exception_in_training_marks_the_run_crashed(server: ServerThread) -> None:
    model = mlp()
    with pytest.raises(Exception, match="disk on fire"):  # TensorFlow wraps it in its UnknownError
        model.fit(Exploding(3), epochs=EPOCHS, verbose=0, callbacks=[MonitorCallback(server.url)])
    store = store_of(server)
    run = only_run(store)
    assert store.get_run(run).status == "crashed"
    steps = store.scalars(run, "loss").steps.tolist()
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < SAMPLES // BATCH


def test_misconfiguration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        MonitorCallback()
    with pytest.raises(ValueError, match="embedding_layer needs"):
        MonitorCallback("http://127.0.0.1:1", embedding_layer="hidden")
    with pytest.raises(ValueError, match=r"1\.\.1000 samples"):
        MonitorCallback("http://127.0.0.1:1", predictions=(np.zeros((5, 2)), np.zeros(4)))
    with pytest.raises(ValueError, match="histograms_every"):
        MonitorCallback("http://127.0.0.1:1", histograms_every=0)


@pytest.mark.parametrize("panel", ["curves", "data", "model", "predictions", "weights"])
def test_a_panels_empty_state_names_only_calls_and_arguments_that_exist(panel: str) -> None:
    module = importlib.import_module(f"monitor.dashboard.panels.{panel}")
    notes = [
        value
        for name, value in vars(module).items()
        if name.endswith("_TEXT") and isinstance(value, str) and value != LOADING_TEXT  # that one sends nobody anywhere
    ]
    assert module.EMPTY_TEXT in notes
    for text in notes:  # the empty state, and the notes for what is missing (no labels, no embedding)
        _check_note(panel, text)


def _check_note(panel: str, text: str) -> None:
    snippets = re.findall(r"<code>(.*?)</code>", text)
    assert snippets, text
    for method in re.findall(r"\bmonitor\.(\w+)\(", text):
        assert callable(getattr(Monitor, method, None)), f"{panel}: Monitor has no {method}()"
    callback_snippets = [s for s in snippets if not s.startswith(("monitor.", "model."))]  # keras' own: fit(...)
    keywords = [name for snippet in callback_snippets for name in re.findall(r"\b(\w+)=", snippet)]
    parameters = inspect.signature(MonitorCallback).parameters
    for name in keywords:
        assert name in parameters, f"{panel}: MonitorCallback has no argument {name!r}"
