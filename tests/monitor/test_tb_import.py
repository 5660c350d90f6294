"""``labscreen import-tb``: TensorBoard logs, TF1 (PyTorch's kind) and TF2 (TensorFlow's and Keras's), as finished runs.

The TF1 logs are written with TensorBoard's own event writer and protos, as
PyTorch's ``SummaryWriter`` writes them; the TF2 logs with ``tf.summary``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.cli import main
from monitor.export import EVERYTHING
from monitor.store import SQLiteStore
from monitor.tb_import import STREAM, import_logdir, run_id
from tests.serving import ServerThread

T0 = 1_700_000_000.0


def write_tf1(directory: Path, steps: int = 4, first: int = 0) -> np.ndarray:
    """Scalars as ``simple_value`` and histograms as ``HistogramProto``; returns the values binned at the last step.

    Steps ``first`` to ``first + steps - 1`` are written (as steps 10 times that), in a new event file.
    """
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(directory))
    values = np.zeros(0)
    for step in range(first, first + steps):
        values = np.random.default_rng(step).normal(size=1000)
        limits = [-1e308, -1.0, 0.0, 1.0, 1e308]  # bucket i: [limits[i-1], limits[i]), as np.histogram's
        counts = [0, *np.histogram(values, [-np.inf, -1.0, 0.0, 1.0, np.inf])[0].tolist()]
        histo = summary_pb2.HistogramProto(
            min=values.min(), max=values.max(), num=len(values), sum=values.sum(),
            sum_squares=float((values**2).sum()), bucket_limit=limits, bucket=counts,
        )  # fmt: skip
        same = summary_pb2.HistogramProto(min=2.0, max=2.0, num=3, sum=6.0, sum_squares=12.0, bucket_limit=[2.0, 1e308],
                                          bucket=[3, 0])  # fmt: skip
        empty = summary_pb2.HistogramProto(num=0, bucket_limit=[1e308], bucket=[0])
        summary = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag="acc", simple_value=0.5 + step / 10),
            summary_pb2.Summary.Value(tag="weights", histo=histo),
            summary_pb2.Summary.Value(tag="bias", histo=same),
            summary_pb2.Summary.Value(tag="nothing", histo=empty),
        ])  # fmt: skip
        writer.add_event(event_pb2.Event(wall_time=T0 + step, step=step * 10, summary=summary))
    writer.close()
    return values


def stored(store_path: Path, run: str) -> dict[str, Any]:
    store = SQLiteStore(store_path)
    try:
        info = store.get_run(run)
        scalars = {name: store.scalars(run, name) for name in store.scalar_names(run)}
        histograms = {name: store.histograms(run, name, limit=EVERYTHING) for name in store.histogram_names(run)}
        return {"info": info, "scalars": scalars, "histograms": histograms, "events": store.events(run)}
    finally:
        store.close()


def test_tf1_logs_become_a_finished_run_with_their_scalars_histograms_and_times(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    last = write_tf1(logdir / "torch")
    [report] = import_logdir(str(tmp_path / "s.sqlite"), logdir)
    assert (report.name, report.scalars, report.histograms) == ("torch", 4, 8)
    assert report.skipped == {"nothing": "4 empty histograms"}
    got = stored(tmp_path / "s.sqlite", report.run)
    info = got["info"]
    assert (info.status, info.started, info.finished, info.last_step) == ("finished", T0, T0 + 3, 30)
    assert (info.project, info.framework, info.name) == ("logs", "tensorboard", "torch")
    acc = got["scalars"]["acc"]
    assert acc.steps.tolist() == [0, 10, 20, 30] and acc.wall.tolist() == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert acc.values == pytest.approx([0.5, 0.6, 0.7, 0.8])
    weights = got["histograms"]["weights"][-1]
    assert weights.step == 30
    assert weights.edges.tolist() == pytest.approx([last.min(), -1.0, 0.0, 1.0, last.max()])  # open ends: min, max
    assert weights.counts.tolist() == np.histogram(last, [-np.inf, -1.0, 0.0, 1.0, np.inf])[0].tolist()
    assert weights.count == 1000
    assert (weights.mean, weights.std) == pytest.approx((last.mean(), last.std()))  # TF1's exact sums
    bias = got["histograms"]["bias"][-1]  # every value the same: one bin, one unit wide
    assert (bias.edges.tolist(), bias.counts.tolist(), bias.mean, bias.std) == ([1.5, 2.5], [3.0], 2.0, 0.0)
    assert "nothing" not in got["histograms"]
    assert [e.text for e in got["events"]] == [f"imported from TensorBoard: {logdir / 'torch'}"]


def test_importing_again_adds_nothing_and_an_interrupted_import_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logdir, store_path = tmp_path / "logs", tmp_path / "s.sqlite"
    write_tf1(logdir, steps=30)
    real_submit, calls = SQLiteStore.submit, [0]

    def failing(self: SQLiteStore, stream: str, message: Any) -> bool:
        calls[0] += 1
        if calls[0] == 5:
            raise OSError("disk gone")
        return real_submit(self, stream, message)

    monkeypatch.setattr(SQLiteStore, "submit", failing)
    with pytest.raises(OSError, match="disk gone"):
        import_logdir(str(store_path), logdir)
    monkeypatch.setattr(SQLiteStore, "submit", real_submit)
    partial = stored(store_path, run_id(logdir))
    assert partial["info"].status != "finished"
    [report] = import_logdir(str(store_path), logdir)
    assert not report.already
    got = stored(store_path, report.run)
    assert got["info"].status == "finished"
    assert got["scalars"]["acc"].steps.tolist() == [10 * s for s in range(30)]  # each once
    assert [h.step for h in got["histograms"]["weights"]] == [10 * s for s in range(30)]
    assert len(got["events"]) == 1
    [again] = import_logdir(str(store_path), logdir)
    assert again.already
    assert stored(store_path, report.run)["info"].status == "finished"  # not reopened as running
    store = SQLiteStore(store_path)
    store.start(lambda *_: None)
    try:
        assert store.committed_seq(report.run, STREAM) == 1 + 2 * 30 + 2  # acc, two histograms a step, event, finish
    finally:
        store.close()


@pytest.mark.tf
def test_tf2_and_keras_logs_import_with_what_cannot_be_imported_named(tmp_path: Path) -> None:
    script = """
import sys, numpy as np, tensorflow as tf
writer = tf.summary.create_file_writer(sys.argv[1] + "/train")
with writer.as_default():
    for step in range(5):
        tf.summary.scalar("epoch_loss", 1.0 / (step + 1), step=step)
        tf.summary.histogram("dense/kernel", np.arange(100.0) + step, step=step, buckets=10)
        tf.summary.histogram("constant", np.ones(5), step=step)
        tf.summary.text("note", "hello", step=step)
        tf.summary.image("picture", np.zeros((1, 4, 4, 1)), step=step)
writer.close()
"""
    logdir = tmp_path / "keras"
    subprocess.run([sys.executable, "-c", script, str(logdir)], check=True, capture_output=True, timeout=240)
    [report] = import_logdir(str(tmp_path / "s.sqlite"), logdir)
    assert (report.name, report.scalars, report.histograms) == ("train", 5, 10)
    assert report.skipped == {"note": "5 text tensors", "picture": "5 images tensors"}
    got = stored(tmp_path / "s.sqlite", report.run)
    assert got["scalars"]["epoch_loss"].values == pytest.approx([1 / (s + 1) for s in range(5)])
    kernel = got["histograms"]["dense/kernel"][-1]
    assert kernel.step == 4 and kernel.count == 100
    assert (kernel.edges[0], kernel.edges[-1]) == (pytest.approx(4.0), pytest.approx(103.0))
    assert kernel.mean == pytest.approx(np.arange(100.0).mean() + 4, rel=0.01)  # from the bins
    constant = got["histograms"]["constant"][-1]
    assert constant.counts.sum() == 5 and constant.edges[0] < 1.0 < constant.edges[-1]


def test_the_cli_imports_into_a_running_servers_store_and_says_what_it_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logdir, store_path = tmp_path / "old-runs", tmp_path / "s.sqlite"
    write_tf1(logdir / "a")
    write_tf1(logdir / "b" / "train")
    with ServerThread(store_path) as server:
        assert main(["import-tb", str(logdir), "--store", str(store_path), "--project", "legacy"]) == 0
        out = capsys.readouterr().out
        assert f"{run_id(logdir / 'a')}" in out and "b/train" in out and "not imported: nothing: 4 empty" in out
        with urllib.request.urlopen(server.url + "/api/runs", timeout=10) as reply:
            runs = {r["name"]: r for r in json.loads(reply.read())["runs"]}
        assert {name: (r["status"], r["project"]) for name, r in runs.items()} == {
            "a": ("finished", "legacy"), "b/train": ("finished", "legacy"),
        }  # fmt: skip
    assert main(["import-tb", str(logdir), "--store", str(store_path)]) == 0
    assert capsys.readouterr().out.count("imported before: nothing new") == 2


def test_the_cli_says_clearly_when_there_is_nothing_to_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["import-tb", str(tmp_path / "empty"), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err
    assert main(["import-tb", str(tmp_path / "missing"), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "no directory" in capsys.readouterr().err


def test_without_the_tensorboard_package_the_cli_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tf1(tmp_path / "logs")
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto.event_pb2", None)  # as if not installed
    assert main(["import-tb", str(tmp_path / "logs"), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "pip install 'labscreen[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()  # nothing written


def test_a_log_that_grew_since_its_import_gets_its_new_records_once(tmp_path: Path) -> None:
    logdir, store_path = tmp_path / "still-training", tmp_path / "s.sqlite"
    write_tf1(logdir, steps=3)
    [first] = import_logdir(str(store_path), logdir)
    assert (first.scalars, first.histograms) == (3, 6)
    write_tf1(logdir, steps=3, first=3)  # the run went on: a second event file
    [second] = import_logdir(str(store_path), logdir)
    assert (second.scalars, second.histograms, second.already) == (3, 6, False)
    got = stored(store_path, first.run)
    assert got["scalars"]["acc"].steps.tolist() == [0, 10, 20, 30, 40, 50]
    assert [h.step for h in got["histograms"]["weights"]] == [0, 10, 20, 30, 40, 50]
    assert (got["info"].status, got["info"].last_step, got["info"].finished) == ("finished", 50, T0 + 5)
    assert got["info"].started == T0
    assert len(got["events"]) == 2  # one per import that brought something


def test_a_tf1_histogram_whose_maximum_is_a_bucket_limit_keeps_its_buckets(tmp_path: Path) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    values = np.array([-1.0, -0.5, -0.5, 0.0])  # TF's buckets are [a, b): 0.0 opens the last one, zero wide
    limits = [-1e308, -1.0, -0.5, 0.0, 1e308]
    histo = summary_pb2.HistogramProto(min=-1.0, max=0.0, num=4, sum=-2.0, sum_squares=1.5, bucket_limit=limits,
                                       bucket=[0, 0, 1, 2, 1])  # fmt: skip
    writer = EventFileWriter(str(tmp_path / "logs"))
    writer.add_event(event_pb2.Event(wall_time=T0, step=1, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="relu", histo=histo)])))  # fmt: skip
    writer.close()
    [report] = import_logdir(str(tmp_path / "s.sqlite"), tmp_path / "logs")
    [relu] = stored(tmp_path / "s.sqlite", report.run)["histograms"]["relu"]
    assert relu.edges.tolist() == [-1.0, -0.5, 0.0]  # not one bin for all
    assert relu.counts.tolist() == [1.0, 3.0]  # the zero-wide bucket's value joins the one before
    assert (relu.min, relu.max, relu.count) == (-1.0, 0.0, len(values))


def test_a_record_still_being_written_ends_the_file_and_tensorflow_is_not_loaded(tmp_path: Path) -> None:
    """Reading needs no TensorFlow: TensorBoard's lazy TensorFlow, once settled on its stub, broke TF for good."""
    write_tf1(tmp_path / "logs", steps=3)
    [events] = list((tmp_path / "logs").iterdir())
    with events.open("ab") as file:
        file.write(b"\x40\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 10)  # a record's header, its data not yet
    modules = set(sys.modules)
    [report] = import_logdir(str(tmp_path / "s.sqlite"), tmp_path / "logs")
    assert (report.scalars, report.histograms) == (3, 6)
    loaded = set(sys.modules) - modules
    assert not {m for m in loaded if m == "tensorflow" or m.startswith(("tensorflow.", "tensorboard.compat.notf"))}
