"""Tests of the public Monitor: argument checks, an absent server, and a real server on port 0."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from monitor.store.base import RunStore
from monitor.wire import Ack, Error, Event, GraphNode, Hello, Welcome, decode, encode
from producers import DeliveryReport, Monitor
from tests.serving import ServerThread, free_port

Check = Callable[[Monitor], object]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until true; fail (not hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def producer_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("producers") and r.levelno >= logging.WARNING]


def sender_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("labscreen-") and t.name != "labscreen-test-server"]


@pytest.fixture
def absent_url() -> str:
    """The url of a port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def monitors() -> Iterator[list[Monitor]]:
    """Monitors a test makes; any left unfinished are finished without waiting."""
    made: list[Monitor] = []
    yield made
    for monitor in made:
        if not monitor.finished:
            monitor.finish(timeout=0)


@pytest.fixture
def idle(absent_url: str, monitors: list[Monitor]) -> Monitor:
    monitors.append(Monitor(absent_url, run="validation", flush_interval=0))
    return monitors[-1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    thread = ServerThread(tmp_path / "store.sqlite").start()
    yield thread
    thread.stop()


def store_of(server: ServerThread) -> RunStore:
    store = server.running.store
    assert store.flush(30)
    return store


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"url": "ftp://host:1"}, ValueError, "url"),
        ({"url": 5006}, TypeError, "url"),
        ({"run": "has space"}, ValueError, "run"),
        ({"run": "r" * 201}, ValueError, "run"),
        ({"name": "n" * 201}, ValueError, "name"),
        ({"project": 3}, TypeError, "project"),
        ({"config": [1, 2]}, TypeError, "config"),
        ({"config": {"lr": float("nan")}}, ValueError, "config"),
        ({"config": {"model": object()}}, ValueError, "config"),
        ({"config": {"a": [[[[[[[[[[1]]]]]]]]]]}}, ValueError, "config"),
        ({"max_buffer_bytes": -1}, ValueError, "max_buffer_bytes"),
        ({"max_spool_bytes": 1.5}, TypeError, "max_spool_bytes"),
        ({"flush_interval": -1}, ValueError, "flush_interval"),
        ({"rank": 2, "world_size": 2}, ValueError, "rank"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    before = len(sender_threads())
    with pytest.raises(error, match=match):
        Monitor(**kwargs)
    assert len(sender_threads()) == before


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m.log([("loss", 1.0)]), TypeError, "metrics"),
        (lambda m: m.log({"loss": "high"}), TypeError, r"metrics\['loss'\]"),
        (lambda m: m.log({"loss": None}), TypeError, r"metrics\['loss'\]"),
        (lambda m: m.log({"x" * 201: 1.0}), ValueError, "metrics name"),
        (lambda m: m.log({"": 1.0}), ValueError, "metrics name"),
        (lambda m: m.log({1: 1.0}), TypeError, "metrics name"),
        (lambda m: m.log({"loss": 1.0}, step=-1), ValueError, "step"),
        (lambda m: m.log({"loss": 1.0}, step=1.5), TypeError, "step"),
        (lambda m: m.log({"loss": np.complex64(1 + 1j)}), TypeError, "real number"),
        (lambda m: m.log({"loss": np.array(1j)}), TypeError, "real number"),
        (lambda m: m.histogram("w", ["a", "b"]), TypeError, "values"),
        (lambda m: m.histogram("w", [[1, 2], [3]]), ValueError, "values"),
        (lambda m: m.histogram("w", [1.0], bins=0), ValueError, "bins"),
        (lambda m: m.histogram("", [1.0]), ValueError, "name"),
        (lambda m: m.histogram("w", [1.0], step=True), TypeError, "step"),
        (lambda m: m.histogram("w", (np.array([0.0, 1, 2]), np.array([1.0]))), ValueError, "edges"),
        (lambda m: m.histogram("w", (np.array([0.0, 2, 1]), np.array([1.0, 1]))), ValueError, "edges"),
        (lambda m: m.histogram("w", (np.array([0.0, 1]), np.array([-1.0]))), ValueError, "counts"),
        (lambda m: m.predictions("p", [0, 1], np.ones((3, 2))), ValueError, "rows"),
        (lambda m: m.predictions("p", [0, 5], np.ones((2, 3)) / 3), ValueError, "y_true"),
        (lambda m: m.predictions("p", [0.5, 1], np.ones((2, 2)), task="classification"), ValueError, "y_true"),
        (lambda m: m.predictions("p", [0, 1], np.ones((2, 2)), task="ranking"), ValueError, "task"),
        (lambda m: m.predictions("p", [0, 1], np.ones((2, 2)), classes=["a"]), ValueError, "classes"),
        (lambda m: m.predictions("p", [0.5, 1.5], [0.4, 1.2], classes=["a"]), ValueError, "classes"),
        (lambda m: m.predictions("p", [0, 1], np.ones((2, 2)), embedding=np.ones((2, 3))), ValueError, "embedding"),
        (lambda m: m.predictions("p", np.ones(3), np.ones((3, 2, 2))), ValueError, "outputs"),
        (lambda m: m.predictions("p", np.ones((3, 2)), np.ones(3)), ValueError, "y_true"),
        (lambda m: m.predictions("p", ["a"], [1.0]), TypeError, "y_true"),
        (lambda m: m.graph("layers", []), TypeError, "nodes"),
        (lambda m: m.graph([{"type": "Dense"}], []), ValueError, r"nodes\[0\]"),
        (lambda m: m.graph([{"name": "a", "shape": "(1,)"}], []), ValueError, r"nodes\[0\]"),
        (lambda m: m.graph([{"name": "a", "params": -1}], []), ValueError, "params"),
        (lambda m: m.graph([{"name": "a"}, {"name": "a"}], []), ValueError, "unique"),
        (lambda m: m.graph([{"name": "a"}], [("a", "b")]), ValueError, r"edges\[0\]"),
        (lambda m: m.graph([{"name": "a"}], ["ab"]), TypeError, r"edges\[0\]"),
        (lambda m: m.data_summary(np.ones((0, 2))), ValueError, "features"),
        (lambda m: m.data_summary(np.array([["a"]])), TypeError, "features"),
        (lambda m: m.data_summary(np.ones((3, 2)), labels=[0, 1]), ValueError, "labels"),
        (lambda m: m.data_summary(np.ones((3, 2)), labels=[0, 1, -1]), ValueError, "labels"),
        (lambda m: m.data_summary(np.ones((3, 2)), labels=[0, 1, 2], label_names=["a", "b"]), ValueError, "labels"),
        (lambda m: m.data_summary(np.ones((3, 2)), label_names=["a"]), ValueError, "label_names"),
        (lambda m: m.data_summary(np.ones((3, 2)), feature_names=["a"]), ValueError, "feature_names"),
        (lambda m: m.data_summary(np.ones((3, 2)), bins=0), ValueError, "bins"),
        (lambda m: m.data_summary(np.ones((3, 2)), sample_size=-1), ValueError, "sample_size"),
        (lambda m: m.data_summary(np.ones((3, 2)), name=""), ValueError, "name"),
        (lambda m: m.event(""), ValueError, "text"),
        (lambda m: m.event(3), TypeError, "text"),
        (lambda m: m.event("saved", level="debug"), ValueError, "level"),
        (lambda m: m.finish(status="ok"), ValueError, "status"),
        (lambda m: m.finish(timeout=-1), ValueError, "timeout"),
    ],
)
def test_bad_call_arguments_are_named(idle: Monitor, call: Check, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call(idle)
    assert not idle.finished


def test_url_and_token_resolve_argument_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch, monitors: list[Monitor]
) -> None:
    monkeypatch.delenv("LABSCREEN_URL", raising=False)
    monitors.append(Monitor(flush_interval=0))
    assert monitors[-1].url == "ws://127.0.0.1:5006/ws/ingest"
    monkeypatch.setenv("LABSCREEN_URL", "https://lab.example:8443/screen/")
    monitors.append(Monitor())
    assert monitors[-1].url == "wss://lab.example:8443/screen/ws/ingest"
    monitors.append(Monitor("http://10.0.0.1:9000"))
    assert monitors[-1].url == "ws://10.0.0.1:9000/ws/ingest"


def test_generated_run_ids_are_url_safe_and_distinct(absent_url: str, monitors: list[Monitor]) -> None:
    monitors.extend(Monitor(absent_url, name=name) for name in ("ResNet 50 / lr=0.1", "", "...", "ü" * 150))
    runs = [m.run for m in monitors]
    assert len(set(runs)) == len(runs)
    assert runs[0].startswith("ResNet-50-lr-0.1-")
    assert all(len(run) <= 200 and run[0].isalnum() for run in runs)


def test_absent_server_costs_a_warning_and_finish_returns_after_its_timeout_warning_of_the_loss(
    absent_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="producers")
    monitor = Monitor(absent_url, name="offline", flush_interval=0)
    for step in range(200):
        monitor.log({"loss": 1.0 / (step + 1)})
    monitor.histogram("w", np.random.default_rng(0).normal(size=1000))
    monitor.event("checkpoint saved")
    report = monitor.finish(timeout=0.5)
    assert report.undelivered > 0 and report.acked == 0 and report.sent == 0
    assert report.frames == report.undelivered and report.dropped == report.refused == 0
    unreachable, loss = producer_warnings(caplog)  # one while training, one for what finish gave up
    assert "cannot reach" in unreachable and f"{report.frames} of {report.frames} frames" in loss
    assert f"labscreen-{monitor.run}" not in [t.name for t in sender_threads()]


def test_calls_after_finish_warn_once_and_are_ignored(idle: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    report = idle.finish(timeout=0)
    caplog.clear()
    idle.log({"loss": 1.0})
    idle.event("late")
    assert idle.finish() == report
    assert len([m for m in producer_warnings(caplog) if "finished" in m]) == 1


def test_every_message_kind_arrives_in_the_store(server: ServerThread, monitors: list[Monitor]) -> None:
    monitor = Monitor(server.url, name="kinds", project="tests", config={"lr": 0.1, "layers": [64, 10]})
    monitors.append(monitor)
    for _ in range(3):
        monitor.log({"loss": 0.5, "acc": 0.75})
    monitor.log({"loss": 0.25}, step=10)
    monitor.log({"loss": 0.125})
    weights = np.linspace(-1, 1, 101)
    monitor.histogram("dense/kernel", weights)
    weights[:] = 99.0  # the Monitor copied the array at the call
    monitor.histogram("binned", (np.array([0.0, 1.0, 2.0]), np.array([3, 4])), step=4)
    monitor.predictions("val", np.eye(3)[[0, 2, 1, 2]], np.full((4, 3), 1 / 3), classes=["a", "b", "c"])
    monitor.predictions("reg", np.arange(5.0), np.arange(5.0) + 0.5, embedding=np.ones((5, 2)))
    nodes: list[dict[str, Any] | GraphNode] = [
        {"name": "in", "type": "Input", "output_shape": (None, 4)},
        GraphNode("out", "Dense", params=5),
    ]
    monitor.graph(nodes, [("in", "out")])
    monitor.data_summary(np.arange(30.0).reshape(10, 3), labels=np.arange(10) % 2, label_names=["no", "yes"])
    monitor.event("checkpoint saved", level="warning")
    report = monitor.finish(timeout=30)
    # 8 frames of other kinds; the 5 log() calls share one or more Scalars frames.
    assert report == DeliveryReport(monitor.run, report.frames, report.frames, report.frames, 0, 0, 0)
    assert 9 <= report.frames <= 13

    store = store_of(server)
    run = store.get_run(monitor.run)
    assert (run.name, run.project, run.status, run.config["lr"]) == ("kinds", "tests", "finished", 0.1)
    assert store.scalars(monitor.run, "loss").steps.tolist() == [0, 1, 2, 10, 11]
    assert store.scalars(monitor.run, "acc").values.tolist() == [0.75] * 3
    (hist,) = store.histograms(monitor.run, "dense/kernel")
    assert (hist.step, hist.count, hist.max, hist.counts.sum()) == (11, 101, 1.0, 101)
    assert store.histograms(monitor.run, "binned")[0].counts.tolist() == [3, 4]
    (val,) = store.predictions(monitor.run, "val")
    assert (val.task, val.y_true.tolist(), val.classes) == ("classification", [0, 2, 1, 2], ("a", "b", "c"))
    (reg,) = store.predictions(monitor.run, "reg")
    assert reg.task == "regression" and reg.embedding is not None
    graph = store.graph(monitor.run)
    assert graph is not None and graph.edges == (("in", "out"),) and graph.nodes[0].output_shape == "(None, 4)"
    (data,) = store.data_summaries(monitor.run)
    assert data.label_counts is not None and data.label_counts.tolist() == [5, 5]
    assert [e.text for e in store.events(monitor.run)] == ["checkpoint saved"]


def test_a_hundred_thousand_points_are_stored_exactly_once(server: ServerThread) -> None:
    with Monitor(server.url, name="bulk") as monitor:
        for step in range(50_000):
            monitor.log({"loss": float(step), "lr": 0.1})
    store = store_of(server)
    for name in ("loss", "lr"):
        series = store.scalars(monitor.run, name)
        assert series.steps.tolist() == list(range(50_000))
    assert store.scalars(monitor.run, "loss").values.tolist() == [float(s) for s in range(50_000)]
    report = monitor.delivery()
    assert report.acked == report.frames and report.undelivered == 0


def test_server_restart_mid_run_loses_and_duplicates_nothing(server: ServerThread, monitors: list[Monitor]) -> None:
    monitor = Monitor(server.url, name="restart", flush_interval=0.01)
    monitors.append(monitor)
    for step in range(5_000):
        monitor.log({"loss": float(step)})
    wait_until(lambda: monitor.delivery().acked > 0)
    server.stop()
    for step in range(5_000, 10_000):
        monitor.log({"loss": float(step)})
    monitor.event("logged while the server was down")
    server.start()
    report = monitor.finish(timeout=60)
    assert report.undelivered == 0 and report.acked == report.frames
    store = store_of(server)
    assert store.scalars(monitor.run, "loss").steps.tolist() == list(range(10_000))
    assert [e.text for e in store.events(monitor.run)] == ["logged while the server was down"]


def test_a_server_started_after_the_producer_receives_everything_through_the_spool(
    tmp_path: Path, monitors: list[Monitor]
) -> None:
    port = free_port()
    spool = tmp_path / "spool"
    monitor = Monitor(f"http://127.0.0.1:{port}", name="late", spool_dir=spool, max_buffer_bytes=4096)
    monitors.append(monitor)
    for step in range(2_000):
        monitor.log({"loss": float(step)})
        if step % 100 == 0:
            monitor.histogram("w", np.full(50, float(step)), step=step)
    wait_until(lambda: any(spool.glob("*.spool")))
    with ServerThread(tmp_path / "store.sqlite", port=port) as server:
        report = monitor.finish(timeout=60)
        assert report.undelivered == 0 and report.dropped == 0 and report.acked == report.frames
        store = store_of(server)
        assert store.scalars(monitor.run, "loss").steps.tolist() == list(range(2_000))
        assert [h.step for h in store.histograms(monitor.run, "w")] == list(range(0, 2_000, 100))
    assert list(spool.iterdir()) == []


def announced_drops(texts: list[str]) -> list[int]:
    """The counts of the producer's "labscreen dropped N frames ..." events."""
    return [int(t.split()[2]) for t in texts if t.startswith("labscreen dropped")]


def test_frames_dropped_while_unreachable_are_counted_and_announced(tmp_path: Path, monitors: list[Monitor]) -> None:
    port = free_port()
    monitor = Monitor(f"http://127.0.0.1:{port}", max_buffer_bytes=2_000, max_spool_bytes=0, flush_interval=0)
    monitors.append(monitor)
    for i in range(100):
        monitor.event(f"event {i}")
    wait_until(lambda: monitor.delivery().dropped > 0)
    with ServerThread(tmp_path / "store.sqlite", port=port) as server:
        report = monitor.finish(timeout=60)
        assert report.dropped > 0 and report.undelivered == 0
        assert report.frames == report.acked + report.dropped
        texts = [e.text for e in store_of(server).events(monitor.run, limit=200)]
    assert any(t.endswith("while the server was unreachable") for t in texts if t.startswith("labscreen dropped"))
    # Frames queued after the reconnect (the announcement among them) can push out more;
    # those are announced on closing, so together the announcements count every drop.
    assert sum(announced_drops(texts)) == report.dropped
    assert "event 99" in texts and "event 0" not in texts


def test_frames_dropped_while_connected_are_announced_during_the_run_and_all_counted(
    server: ServerThread, monitors: list[Monitor]
) -> None:
    monitor = Monitor(server.url, max_buffer_bytes=2_000, max_spool_bytes=0, flush_interval=0)
    monitors.append(monitor)
    monitor.event("first")
    wait_until(lambda: monitor.delivery().acked > 0)
    logged = 0
    while monitor.delivery().dropped == 0:  # the loop frames thousands at once; 2 kB holds a few
        assert logged < 1_000_000, "nothing was dropped"
        for _ in range(5_000):
            monitor.event(f"event {logged}")
            logged += 1
        time.sleep(0.001)
    store = store_of(server)
    # Announced while the run goes on, not only when it finishes.
    wait_until(lambda: announced_drops([e.text for e in store.events(monitor.run, limit=1_000_000)]) != [])
    report = monitor.finish(timeout=60)
    assert report.dropped > 0 and report.undelivered == 0
    texts = [e.text for e in store.events(monitor.run, limit=1_000_000)]
    assert sum(announced_drops(texts)) == report.dropped
    assert "first" in texts and f"event {logged - 1}" in texts


def test_a_buffer_too_small_for_any_frame_drops_each_once_and_finishes(
    server: ServerThread, monitors: list[Monitor]
) -> None:
    monitor = Monitor(server.url, max_buffer_bytes=0, max_spool_bytes=0, flush_interval=0)
    monitors.append(monitor)
    monitor.event("too big for the buffer")
    report = monitor.finish(timeout=30)
    # Its own drop announcement is dropped too, and not announced again and again.
    assert report.frames == report.dropped <= 3 and report.undelivered == 0


def test_a_caller_that_outruns_the_sender_has_its_oldest_calls_discarded_counted_and_warned(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("producers.sender.MAX_QUEUED_ITEMS", 100)
    monitor = Monitor(server.url, name="outrun", flush_interval=0)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # the sender's loop is busy: nothing is framed meanwhile
        held.set()
        release.wait(30)

    monitor._sender._loop.call_soon_threadsafe(hold)
    assert held.wait(30)
    for step in range(1_000):
        monitor.log({"loss": float(step)}, step=step)
    release.set()
    wait_until(lambda: monitor.delivery().acked == 1)
    report = monitor.finish(timeout=60)
    assert report.discarded == 900 and report.undelivered == 0
    assert store_of(server).scalars(monitor.run, "loss").steps.tolist() == list(range(900, 1_000))
    warnings = producer_warnings(caplog)
    assert sum("faster than they can be framed" in w for w in warnings) == 1
    assert any("900 calls were discarded" in w for w in warnings)


def slow_builder(started: threading.Event, release: threading.Event) -> Callable[[str, int], Event]:
    """A frame builder that takes until ``release``, as binning 50M values does."""

    def build(run: str, seq: int) -> Event:
        started.set()
        release.wait(60)
        return Event(run, seq, -1, time.time(), "info", "built late")

    return build


def test_finish_does_not_wait_past_its_timeout_for_a_busy_sender_and_counts_what_it_had_not_framed(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender binning a huge histogram cannot be interrupted: finish returns anyway, and says what was lost.

    Before, finish waited its timeout, then up to 2 s more for the thread,
    and reported only the frames made so far: the calls still queued were
    lost without a word while the thread went on binning. The frame being
    built when finish gave up is not sent after all (a review found it was).
    """
    monitor = Monitor(server.url, name="busy", flush_interval=0)
    started, release = threading.Event(), threading.Event()
    monitor._sender.submit(slow_builder(started, release))
    assert started.wait(30)
    for step in range(10):
        monitor.log({"loss": float(step)}, step=step)
    report = monitor.finish(timeout=0.1)
    assert monitor._sender._thread.is_alive()  # finish came back while the thread was still building
    assert report.unframed == 12 and report.frames == 0  # the slow frame, ten points and the finish
    assert any("12 calls were still being framed" in w for w in producer_warnings(caplog))
    release.set()
    monitor._sender._thread.join(30)
    assert not monitor._sender._thread.is_alive()  # it stopped at its next step
    assert monitor.delivery() == report and monitor._sender._ledger.frames == 0
    store = store_of(server)  # and it framed nothing more: what it reported lost is lost
    assert monitor.run not in {run.id for run in store.list_runs()} or store.events(monitor.run) == []


def test_a_busy_sender_given_up_on_leaves_no_spool_file_behind_at_exit(tmp_path: Path, absent_url: str) -> None:
    """The thread deletes the spool when it stops; a process exiting before it gets there left the files."""
    spool = tmp_path / "spool"
    result = subprocess.run(
        [sys.executable, "-c", _BUSY_EXIT_SCRIPT, absent_url, str(spool)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "spilled" in result.stdout and "calls were still being framed" in result.stderr, result
    assert list(spool.glob("*.spool")) == []


_BUSY_EXIT_SCRIPT = """
import sys, threading
from producers import Monitor
from tests.producers.test_client import slow_builder
monitor = Monitor(sys.argv[1], spool_dir=sys.argv[2], max_buffer_bytes=1, flush_interval=0)
for step in range(20):
    monitor.log({"loss": 1.0}, step=step)
while not monitor._sender._buffer.spool_files:
    threading.Event().wait(0.01)
print("spilled", flush=True)
started, release = threading.Event(), threading.Event()
monitor._sender.submit(slow_builder(started, release))
started.wait(30)
monitor.finish(timeout=0.1)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12 warns of fork() in a threaded process
def test_a_forked_child_says_its_monitor_sends_nothing_there_and_does_not_wait_for_it(server: ServerThread) -> None:
    """The sender's thread does not survive fork: a child's calls were queued for nobody, and lost in silence.

    Its finish() then waited out its timeout and reported the parent's
    frames as its own. The parent's run goes on untouched.
    """
    monitor = Monitor(server.url, name="parent")
    monitor.log({"loss": 1.0}, step=0)
    wait_until(lambda: monitor.delivery().acked == 1)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report what its Monitor said and did, then leave without cleanup
        try:
            warnings: list[str] = []
            handler = logging.Handler(logging.WARNING)
            handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
            logging.getLogger("producers").addHandler(handler)
            monitor.log({"loss": 2.0}, step=1)
            report = monitor.finish(timeout=60)
            os.write(write, json.dumps({"frames": report.frames, "warnings": warnings}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = json.loads(pipe.read() or "{}")
    os.waitpid(child, 0)
    assert said["frames"] == 0
    assert len(said["warnings"]) == 1 and "this process, forked from it, sends nothing" in said["warnings"][0]
    monitor.log({"loss": 3.0}, step=2)
    assert monitor.finish(timeout=30).undelivered == 0
    assert store_of(server).scalars(monitor.run, "loss").values.tolist() == [1.0, 3.0]


def test_a_wrong_token_is_reported_once_and_the_environment_token_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with ServerThread(tmp_path / "store.sqlite", token="s3cret") as server:
        caplog.set_level(logging.DEBUG, logger="producers")
        refused = Monitor(server.url, token="wrong", flush_interval=0)
        refused.log({"loss": 1.0})
        wait_until(lambda: bool(producer_warnings(caplog)))
        assert refused.finish(timeout=0).undelivered == 2  # the log and the finish
        refusal, loss = producer_warnings(caplog)  # the 401 once, not per retry; then the frames given up
        assert "401" in refusal and "2 of 2 frames were not delivered" in loss and "refused the connection" in loss
        monkeypatch.setenv("LABSCREEN_URL", server.url)
        monkeypatch.setenv("LABSCREEN_TOKEN", "s3cret")
        with Monitor(flush_interval=0) as accepted:
            accepted.log({"loss": 1.0})
        assert accepted.delivery().acked == 2


def test_an_exception_in_the_with_block_marks_the_run_crashed(server: ServerThread) -> None:
    with pytest.raises(RuntimeError, match="diverged"), Monitor(server.url, name="crash") as monitor:
        monitor.log({"loss": float("nan")})
        raise RuntimeError("diverged")
    store = store_of(server)
    assert store.get_run(monitor.run).status == "crashed"
    assert np.isnan(store.scalars(monitor.run, "loss").values[0])


class FakeIngest:
    """A scriptable stand-in for ``/ws/ingest`` on port 0, for protocol edge cases.

    ``verdict(message, fake)`` decides each data frame: ``"ack"`` stores it
    (counting duplicates), ``"refuse"`` answers a per-frame error,
    ``"silent"`` answers nothing, and ``"unavailable"`` answers
    ``store_unavailable`` and closes with 4503.
    ``refuse_connections`` first connections are closed with 4001 on hello.
    """

    def __init__(self, verdict: Callable[[Any, FakeIngest], str], refuse_connections: int = 0) -> None:
        self.verdict = verdict
        self.refuse_connections = refuse_connections
        self.connections = 0
        self.stored: dict[int, int] = {}
        self.kinds: dict[int, str] = {}
        self.last_seq = 0
        self._loop = asyncio.new_event_loop()
        self._sock, self.port = bind_unused_port()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeIngest:
        self._thread.start()
        ready: Future[HTTPServer] = Future()
        self._loop.call_soon_threadsafe(lambda: ready.set_result(self._listen()))
        self._server = ready.result(timeout=10)
        return self

    def _listen(self) -> HTTPServer:
        server = HTTPServer(Application([("/ws/ingest", _FakeHandler, {"fake": self})]))
        server.add_sockets([self._sock])
        return server

    def __exit__(self, *exc: object) -> None:
        done: Future[None] = Future()

        async def stop() -> None:
            self._server.stop()
            await self._server.close_all_connections()
            done.set_result(None)

        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(stop()))
        done.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def persisted(self, seq: int, kind: str) -> None:
        self.stored[seq] = self.stored.get(seq, 0) + 1
        self.kinds[seq] = kind
        self.last_seq = max(self.last_seq, seq)


class _FakeHandler(WebSocketHandler):
    def initialize(self, fake: FakeIngest) -> None:
        self.fake = fake

    def on_message(self, message: str | bytes) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return  # frames that were in flight when this side closed
        assert isinstance(message, bytes)
        decoded = decode(message)
        if isinstance(decoded, Hello):
            self.fake.connections += 1
            if self.fake.connections <= self.fake.refuse_connections:
                self.close(4001, "unauthorized")
                return
            self.reply(Welcome(decoded.run, decoded.stream, self.fake.last_seq))
            return
        assert not isinstance(decoded, (Welcome, Ack, Error))
        verdict = self.fake.verdict(decoded, self.fake)
        if verdict == "ack":
            self.fake.persisted(decoded.seq, decoded.kind)
            self.reply(Ack(decoded.run, self.fake.last_seq))
        elif verdict == "refuse":
            self.reply(Error(decoded.run, decoded.seq, "bad_field", "refused by the test"))
        elif verdict == "silent":  # taken, never answered: a hung server
            return
        else:
            self.reply(Error(None, 0, "store_unavailable", "disk on fire"))
            self.close(4503, "store unavailable")

    def reply(self, message: Welcome | Ack | Error) -> None:
        self.write_message(encode(message), binary=True)


def test_refused_frames_are_settled_counted_and_warned_once_per_code(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="producers")
    with FakeIngest(lambda message, fake: "refuse" if message.kind == "event" else "ack") as fake:
        monitor = Monitor(fake.url, flush_interval=0)
        monitor.event("first")
        monitor.log({"loss": 1.0})
        monitor.event("second")
        report = monitor.finish(timeout=30)
    assert (report.refused, report.undelivered, report.acked) == (2, 0, report.frames - 2)
    assert sorted(fake.kinds.values()) == ["finish", "scalars"]
    assert [m for m in producer_warnings(caplog) if "bad_field" in m] == [
        "labscreen: the server refused a frame (bad_field: refused by the test)"
    ]


def test_a_server_that_stops_acknowledging_is_left_and_the_frames_resent_elsewhere_in_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that welcomed the run and then answered nothing held its frames with no word said until finish."""
    monkeypatch.setattr("producers.sender._ACK_TIMEOUT", 0.5)
    with FakeIngest(lambda message, fake: "silent" if fake.connections == 1 else "ack") as fake:
        monitor = Monitor(fake.url, flush_interval=0)
        for step in range(3):
            monitor.event(f"step {step}")
        report = monitor.finish(timeout=60)
    assert fake.connections >= 2 and report.acked == report.frames == 4  # three events and the finish
    assert sorted(fake.stored.values()) == [1, 1, 1, 1]  # resent once, stored once
    assert any("no acknowledgement in 0.5 s" in w for w in producer_warnings(caplog))


def test_a_server_that_keeps_welcoming_and_never_acknowledging_is_warned_of_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A hung server was warned of again after each reconnect's welcome: every 30 s for as long as it hung."""
    caplog.set_level(logging.DEBUG, logger="producers")
    monkeypatch.setattr("producers.sender._ACK_TIMEOUT", 0.3)
    with FakeIngest(lambda message, fake: "silent") as fake:
        monitor = Monitor(fake.url, flush_interval=0)
        monitor.event("never acknowledged")
        wait_until(lambda: fake.connections >= 3, timeout=30)  # left and welcomed again, twice
        left = [m for m in producer_warnings(caplog) if "cannot stay connected" in m]
        back = [
            r.getMessage() for r in caplog.records if "connected to" in r.getMessage() and "resending" in r.getMessage()
        ]
        monitor.finish(timeout=0.5)
    assert len(left) == 1, left
    assert len(back) == 1, back


def test_a_refusal_of_a_later_frame_does_not_hide_an_earlier_one_left_unacknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stall clock restarted on any answer, and stopped when the newest sent frame was refused."""
    monkeypatch.setattr("producers.sender._ACK_TIMEOUT", 0.5)

    def verdict(message: Any, fake: FakeIngest) -> str:
        if fake.connections > 1:
            return "ack"
        return {1: "silent", 2: "refuse"}.get(message.seq, "silent")

    with FakeIngest(verdict) as fake:
        monitor = Monitor(fake.url, flush_interval=0)
        monitor.event("swallowed")
        monitor.event("refused")
        wait_until(lambda: fake.connections >= 2)  # a reconnect after the stall, before any later frame
        report = monitor.finish(timeout=60)
    assert (report.refused, report.undelivered) == (1, 0)


def test_store_unavailable_frames_are_kept_and_resent_exactly_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="producers")

    def verdict(message: Any, fake: FakeIngest) -> str:
        return "unavailable" if fake.connections < 3 and message.seq >= 3 else "ack"

    with FakeIngest(verdict) as fake:
        monitor = Monitor(fake.url, flush_interval=0)
        for step in range(5):
            monitor.event(f"step {step}")
        report = monitor.finish(timeout=30)
    assert report.undelivered == report.refused == 0 and report.acked == report.frames == 6
    assert fake.stored == dict.fromkeys(range(1, 7), 1) and fake.connections >= 3
    assert len([m for m in producer_warnings(caplog) if "store" in m]) == 1


def test_a_refused_connection_is_logged_once_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="producers")
    with FakeIngest(lambda message, fake: "ack", refuse_connections=3) as fake:
        monitor = Monitor(fake.url, flush_interval=0)
        monitor.log({"loss": 1.0})
        report = monitor.finish(timeout=30)
    assert report.undelivered == 0 and fake.connections == 4
    assert [m for m in producer_warnings(caplog) if "4001" in m] == [
        f"labscreen: the server at {monitor.url} refused the connection (close code 4001: unauthorized); retrying"
    ]


_EXIT_SCRIPT = """
import sys
from producers import Monitor
monitor = Monitor(sys.argv[1], run=sys.argv[2])
monitor.log({"loss": 1.0})
if sys.argv[3] == "crash":
    raise SystemExit("training crashed")  # an uncaught exit, reported on stderr
if sys.argv[3] == "raise":
    raise RuntimeError("training crashed")
"""


@pytest.mark.parametrize(("how", "status"), [("return", "finished"), ("raise", "crashed")])
def test_interpreter_exit_finishes_an_unfinished_monitor(server: ServerThread, how: str, status: str) -> None:
    run = f"exit-{how}"
    result = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, server.url, run, how],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == (0 if how == "return" else 1), result.stderr
    store = store_of(server)
    assert store.get_run(run).status == status
    assert store.scalars(run, "loss").values.tolist() == [1.0]


def test_interpreter_exit_is_not_held_up_by_an_absent_server(absent_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, absent_url, "exit-offline", "return"],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0
    unreachable, loss = result.stderr.splitlines()  # one line each, at once and at exit
    assert "cannot reach" in unreachable and "2 of 2 frames were not delivered" in loss, result.stderr
