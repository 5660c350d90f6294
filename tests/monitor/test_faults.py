"""Fault tests: the server killed, its disk full, a long absence, a producer killed.

Each runs a real server (``labscreen serve`` as a child process where the
server itself is killed or must be a process; ``ServerThread`` where the test
reaches into the store to fill its disk) and the real ``Monitor``. What they
prove, whatever the timing: nothing acknowledged is lost, nothing is stored
twice, nothing is dropped silently, and memory and spool stay within their
limits. Waits are bounded polls on conditions, never sleeps.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.store import SQLiteStore
from producers import DeliveryReport, Monitor
from tests.serving import ServerThread, free_port

REPO = Path(__file__).resolve().parents[2]
_READY = re.compile(r"serving on (http://\S+) \(port (\d+)\)")


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` until true; fail (not hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:g} s"
        time.sleep(0.01)


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    """GET ``url``; the status and the JSON body, for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=20) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


class ServeProcess:
    """``labscreen serve`` as a child process; ``start`` again reuses the port it first bound."""

    def __init__(self, store: Path, log: Path, port: int = 0, *extra: str) -> None:
        self.store = store
        self.log = log
        self.port = port
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        """Start and wait (bounded) for the line that names the bound port."""
        argv = [sys.executable, "-m", "monitor.cli", "serve", "--port", str(self.port), "--store", str(self.store)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABSCREEN_")}
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [*argv, "--log-level", "WARNING", *self.extra],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=REPO,
                env=env,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        found = _READY.search(line)
        assert found, f"server did not start: {line!r}; log: {self.log.read_text()}"
        assert self.port in (0, int(found.group(2)))
        self.port = int(found.group(2))
        return self

    def kill(self) -> None:
        """SIGKILL: no flush, no close, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._release()

    def stop(self) -> None:
        """SIGTERM, which commits what is queued; the exit status must be 0."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self._release()
        assert code == 0, self.log.read_text()

    def _release(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc = None


class Trainer:
    """Logs ``loss = step`` at consecutive steps from its own thread, as a training loop would."""

    def __init__(self, monitor: Monitor, first_step: int = 0) -> None:
        self.monitor = monitor
        self.first = first_step
        self.logged = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-trainer", daemon=True)

    def __enter__(self) -> Trainer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def steps(self) -> list[int]:
        return list(range(self.first, self.first + self.logged))

    def _run(self) -> None:
        while not self._stop.is_set():
            step = self.first + self.logged
            self.monitor.log({"loss": float(step)}, step=step)
            self.logged += 1
            self._stop.wait(0.0005)  # pacing, about a training step per half millisecond; not synchronisation


def stored(path: Path, run: str, name: str = "loss") -> tuple[list[int], list[float]]:
    """A series as the store file holds it now, read through a store that is never started."""
    store = SQLiteStore(path)
    try:
        series = store.scalars(run, name)
    finally:
        store.close()
    return series.steps.tolist(), series.values.tolist()


def durable_seq(path: Path, run: str, stream: str) -> int:
    """The highest seq of a stream the file holds, as a restarted server would load it."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT last_seq FROM streams WHERE run = ? AND stream = ?", (run, stream)).fetchone()
    return int(row[0]) if row else 0


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def fully_delivered(report: DeliveryReport) -> bool:
    return report.undelivered == report.dropped == report.refused == 0 and report.acked == report.frames


@pytest.fixture
def finish_later() -> Iterator[list[Monitor]]:
    """Monitors a test makes; any left unfinished (a failed test) are finished without waiting."""
    made: list[Monitor] = []
    yield made
    for monitor in made:
        if not monitor.finished:
            monitor.finish(timeout=0)


@pytest.mark.process
@pytest.mark.timeout(180)
def test_server_killed_mid_run_then_restarted_loses_and_duplicates_nothing(
    tmp_path: Path, finish_later: list[Monitor]
) -> None:
    store = tmp_path / "killed.sqlite"
    server = ServeProcess(store, tmp_path / "server.log", free_port()).start()
    try:
        monitor = Monitor(server.url, name="sigkill", flush_interval=0.01, spool_dir=tmp_path / "spool")
        finish_later.append(monitor)
        with Trainer(monitor) as trainer:
            wait_until(lambda: monitor.delivery().acked >= 20, what="20 frames acknowledged")
            server.kill()
            # Every ack read so far (and any still in the socket buffer) was sent before the kill.
            acked = monitor.delivery().acked
            assert durable_seq(store, monitor.run, monitor.stream) >= acked
            steps, _ = stored(store, monitor.run)
            assert steps == list(range(len(steps))), "commits are a gap-free prefix of the run"
            down = trainer.logged
            wait_until(lambda: trainer.logged > down + 500, what="steps logged while the server is dead")
            server.start()
            wait_until(lambda: monitor.delivery().acked > acked, what="acks after the restart")
        report = monitor.finish(timeout=60)
        assert fully_delivered(report), report
    finally:
        server.stop()
    steps, values = stored(store, monitor.run)
    assert steps == trainer.steps and values == [float(s) for s in trainer.steps]
    assert integrity(store) == "ok"
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def healthz(url: str) -> tuple[int, dict[str, Any]]:
    return get_json(url + "/healthz")


def log_steps(monitor: Monitor, first: int, count: int) -> int:
    for step in range(first, first + count):
        monitor.log({"loss": float(step)}, step=step)
    return first + count


@pytest.mark.timeout(180)
def test_a_full_disk_degrades_health_stops_acks_and_everything_arrives_once_writable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, finish_later: list[Monitor]
) -> None:
    caplog.set_level(logging.INFO)
    with ServerThread(tmp_path / "full.sqlite") as server:
        store, metrics = server.running.store, server.running.metrics
        assert isinstance(store, SQLiteStore)
        monitor = Monitor(server.url, name="disk-full", flush_interval=0.01)
        finish_later.append(monitor)
        step = log_steps(monitor, 0, 100)
        wait_until(lambda: fully_delivered(monitor.delivery()), what="the first points acknowledged")

        store.set_max_bytes(1)  # SQLite holds the file at its current size: the next new page is SQLITE_FULL
        deadline = time.monotonic() + 60
        while healthz(server.url)[0] == 200:
            assert time.monotonic() < deadline, "the store never filled up"
            step = log_steps(monitor, step, 2_000)
        status, health = healthz(server.url)
        assert status == 503 and health["status"] == "degraded"
        assert "full" in health["store"]["error"]
        assert any(
            r.name == "monitor.store.writer" and r.levelno == logging.ERROR and "failed" in r.getMessage()
            for r in caplog.records
        ), "the failed commit is logged"

        durable = store.committed_seq(monitor.run, monitor.stream)
        refused = metrics.errors["store_unavailable"]
        step = log_steps(monitor, step, 1_000)
        # Two more refusals: the producer was turned away, reconnected and was turned away again.
        wait_until(lambda: metrics.errors["store_unavailable"] >= refused + 2, what="the producer refused twice")
        during = monitor.delivery()
        assert store.committed_seq(monitor.run, monitor.stream) == durable, "nothing committed while full"
        assert during.acked <= durable and during.undelivered > 0 and during.dropped == 0

        store.set_max_bytes(None)
        report = monitor.finish(timeout=60)
        assert fully_delivered(report), report
        assert store.flush(30)
        series = store.scalars(monitor.run, "loss")
        assert series.steps.tolist() == list(range(step)), "every point exactly once"
        assert np.array_equal(series.values, np.arange(step, dtype=float))
        status, health = healthz(server.url)
        assert status == 200 and health["status"] == "ok"
    assert any("recovered" in r.getMessage() for r in caplog.records if r.name == "monitor.store.writer")


class Sampler:
    """Peaks of the producer's in-memory frame bytes and of its spool files' size on disk.

    Both are measured on the sender's own loop (``call_soon_threadsafe``), between
    the buffer's operations, where its invariants are meant to hold: the memory
    as the buffer counts it, the spool as the files in the spool directory
    measure on disk. (Measured from another thread, a segment deleted while a
    newer one grows could be counted twice.)
    """

    def __init__(self, monitor: Monitor, spool: Path) -> None:
        self._sender = monitor._sender
        self._spool = spool
        self.memory = 0
        self.disk = 0

    def sample(self) -> None:
        """Measure on the sender's loop and wait for it, which also paces the caller to the sender."""
        done = threading.Event()
        self._sender._loop.call_soon_threadsafe(self._on_loop, done)
        done.wait(30)

    def _on_loop(self, done: threading.Event) -> None:
        self.memory = max(self.memory, self._sender._buffer.memory_bytes)
        self.disk = max(self.disk, sum(path.stat().st_size for path in self._spool.glob("*.spool")))
        done.set()


@pytest.mark.timeout(180)
def test_a_long_absence_stays_bounded_and_every_drop_is_counted_and_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, finish_later: list[Monitor]
) -> None:
    port, spool = free_port(), tmp_path / "spool"
    memory_limit, spool_limit = 8 * 1024, 64 * 1024
    monitor = Monitor(
        f"http://127.0.0.1:{port}",
        name="absent",
        spool_dir=spool,
        max_buffer_bytes=memory_limit,
        max_spool_bytes=spool_limit,
        flush_interval=0,
    )
    finish_later.append(monitor)
    sampler = Sampler(monitor, spool)
    step = 0
    deadline = time.monotonic() + 240  # a bound on the poll on a starved machine, not a speed threshold
    # A long stretch: keep logging until the spool (8 frames-worth per segment) has overflowed many times over.
    while monitor.delivery().dropped < 50 or step < 20_000 or not (sampler.memory and sampler.disk):
        assert time.monotonic() < deadline, f"only {monitor.delivery().dropped} frames dropped"
        step = log_steps(monitor, step, 100)
        sampler.sample()
    sampler.sample()
    assert 0 < sampler.memory <= memory_limit
    assert 0 < sampler.disk <= spool_limit
    assert any("buffer is full" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    before = monitor.delivery()
    assert before.dropped >= 50 and before.acked == 0

    with ServerThread(tmp_path / "late.sqlite", port=port) as server:
        report = monitor.finish(timeout=60)
        assert report.dropped >= before.dropped and report.undelivered == report.refused == 0
        assert report.frames == report.acked + report.dropped
        store = server.running.store
        assert store.flush(30)
        texts = [e.text for e in store.events(monitor.run, limit=1000)]
        steps = store.scalars(monitor.run, "loss").steps.tolist()
    announced = [int(m.group(1)) for t in texts if (m := re.match(r"labscreen dropped (\d+) frames", t))]
    assert announced and 0 < sum(announced) <= report.dropped
    assert steps == list(range(step - len(steps), step)), "the newest frames are kept, the oldest dropped"
    assert 0 < len(steps) < step
    assert not list(spool.glob("*.spool"))


PRODUCER = """
import sys, threading
from producers import Monitor

monitor = Monitor(sys.argv[1], run=sys.argv[2], name="doomed", flush_interval=0.01)
pace = threading.Event()
step = 0
while True:
    monitor.log({"loss": float(step)}, step=step)
    step += 1
    pace.wait(0.001)
"""


def run_status(url: str, run: str) -> str:
    status, body = get_json(f"{url}/api/runs/{run}")
    return str(body.get("status")) if status == 200 else f"http {status}"


def stored_steps(url: str, run: str) -> list[int]:
    status, body = get_json(f"{url}/api/runs/{run}/scalars/loss")
    return list(body["steps"]) if status == 200 else []


@pytest.mark.process
@pytest.mark.timeout(180)
def test_a_killed_producer_goes_stale_and_a_new_hello_resumes_its_run(
    tmp_path: Path, finish_later: list[Monitor]
) -> None:
    run = "killed-producer"
    server = ServeProcess(tmp_path / "stale.sqlite", tmp_path / "server.log", 0, "--stale-after", "1").start()
    try:
        producer = subprocess.Popen([sys.executable, "-c", PRODUCER, server.url, run], cwd=REPO)
        try:
            wait_until(lambda: len(stored_steps(server.url, run)) >= 50, what="the producer's points stored")
            assert run_status(server.url, run) in ("running", "stale")
        finally:
            producer.send_signal(signal.SIGKILL)
            producer.wait(30)
        before = stored_steps(server.url, run)
        assert before == list(range(len(before)))
        wait_until(lambda: run_status(server.url, run) == "stale", what="the run turning stale")

        monitor = Monitor(server.url, run=run, name="resumed", flush_interval=0.01)
        finish_later.append(monitor)
        first = 1_000_000
        with Trainer(monitor, first_step=first) as trainer:
            wait_until(lambda: run_status(server.url, run) == "running", what="the run resumed")
            wait_until(lambda: stored_steps(server.url, run)[-1:] >= [first], what="new points stored")
        report = monitor.finish(timeout=60)
        assert fully_delivered(report), report
        steps = stored_steps(server.url, run)
        assert [s for s in steps if s >= first] == trainer.steps
        assert steps[: len(before)] == before
        assert run_status(server.url, run) == "finished"
    finally:
        server.stop()
