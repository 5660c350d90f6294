"""Tests of SQLiteStore against real SQLite files in tmp_path."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.store import NotFoundError, RunStore, SQLiteStore, StoreError, StoreUnavailable
from monitor.wire import (
    DataMessage,
    DataSummary,
    Event,
    Finish,
    Graph,
    GraphNode,
    Hello,
    Histogram,
    Predictions,
    Scalars,
)

RUN = "run-1"
STREAM = "rank0"
MakeStore = Callable[..., SQLiteStore]


class Commits:
    """A commit listener that records every call, safe to read from the test thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, run: str, stream: str, seq: int) -> None:
        with self._lock:
            self.calls.append((run, stream, seq))

    def seqs(self, run: str = RUN, stream: str = STREAM) -> list[int]:
        with self._lock:
            return [seq for r, s, seq in self.calls if (r, s) == (run, stream)]


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def make_store(db_path: Path) -> Iterator[MakeStore]:
    stores: list[SQLiteStore] = []

    def make(path: str | Path = db_path, **kwargs: Any) -> SQLiteStore:
        store = SQLiteStore(path, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
def store(make_store: MakeStore, commits: Commits) -> SQLiteStore:
    store = make_store()
    store.start(commits)
    store.open_stream(hello())
    assert store.flush()
    return store


def hello(run: str = RUN, stream: str = STREAM, **kwargs: Any) -> Hello:
    return Hello(run=run, stream=stream, **kwargs)


def scalars(seq: int, steps: Any, values: Any, names: tuple[str, ...] = ("loss",), run: str = RUN) -> Scalars:
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    index = np.arange(len(steps), dtype=np.int64) % len(names)
    wall = 1.7e9 + steps.astype(np.float64) / 10
    return Scalars(run, seq, names, steps, wall, index, values)


def histogram(seq: int, step: int, name: str = "dense/kernel", **kwargs: Any) -> Histogram:
    values: dict[str, Any] = {
        "edges": np.linspace(-1, 1, 11), "counts": np.arange(10, dtype=np.float64), "min": -0.9, "max": 0.95,
        "mean": 0.01, "std": 0.3, "count": 45, "nonfinite": 0, **kwargs,
    }  # fmt: skip
    return Histogram(RUN, seq, name, step, 1.7e9 + step, **values)


def scalar_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT coalesce(sum(count), 0) FROM scalar_chunks").fetchone()[0])


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def assert_same(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    for f in fields(want):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, f.name
            assert np.array_equal(a, b, equal_nan=b.dtype.kind == "f"), f.name
        elif isinstance(b, float) and np.isnan(b):
            assert np.isnan(a), f.name
        else:
            assert a == b, f.name


def test_store_satisfies_the_protocol(make_store: MakeStore) -> None:
    store: RunStore = make_store()
    assert isinstance(store, SQLiteStore)


def test_scalars_round_trip(store: SQLiteStore) -> None:
    message = scalars(1, [0, 0, 1, 1, 2], [0.5, 10.0, 0.4, 9.0, 0.3], names=("loss", "lr"))
    assert store.submit(STREAM, message)
    assert store.flush()
    assert store.scalar_names(RUN) == ["loss", "lr"]
    loss = store.scalars(RUN, "loss")
    assert loss.steps.dtype == np.int64 and loss.values.dtype == np.float64
    assert loss.steps.tolist() == [0, 1, 2]
    assert loss.values.tolist() == [0.5, 0.4, 0.3]
    assert np.array_equal(loss.wall, message.wall[[0, 2, 4]])
    assert store.scalars(RUN, "lr").values.tolist() == [10.0, 9.0]
    assert store.get_run(RUN).last_step == 2


def test_every_record_kind_round_trips(store: SQLiteStore) -> None:
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(3), size=8)
    records: list[DataMessage] = [
        histogram(1, 5),
        Predictions(RUN, 2, "val", 5, 1.7e9, "classification", np.arange(8, dtype=np.int64) % 3, probs,
                    ("cat", "dog", "eel"), rng.normal(size=(8, 2))),
        Predictions(RUN, 3, "reg", 5, 1.7e9, "regression", rng.normal(size=(6, 2)),
                    rng.normal(size=(6, 2)).astype(np.float32)),
        Graph(RUN, 4, (GraphNode("in", "Input", "(None, 4)"), GraphNode("fc", "Dense", "(None, 3)", 15, 15)),
              (("in", "fc"),)),
        DataSummary(RUN, 5, "train", 0, 1.7e9, ("a", "b"), np.tile(np.linspace(0, 1, 5), (2, 1)),
                    np.ones((2, 4)), ("x", "y"), np.array([3, 4], dtype=np.int64), ("a", "b"),
                    rng.normal(size=(7, 2)), np.arange(7, dtype=np.int64) % 2),
        DataSummary(RUN, 6, "val", 0, 1.7e9, ("a",), np.linspace(0, 1, 5)[None, :], np.ones((1, 4))),
        Event(RUN, 7, 5, 1.7e9, "warning", "NaN detected in loss"),
    ]  # fmt: skip
    for record in records:
        assert store.submit(STREAM, record)
    assert store.flush()
    assert_same(store.histograms(RUN, "dense/kernel")[0], records[0])
    assert_same(store.predictions(RUN, "val")[0], records[1])
    assert_same(store.predictions(RUN, "reg")[0], records[2])
    assert_same(store.graph(RUN), records[3])
    train, val = store.data_summaries(RUN)
    assert_same(train, records[4])
    assert_same(val, records[5])
    assert_same(store.events(RUN)[0], records[6])


def test_run_metadata_and_finish(make_store: MakeStore, commits: Commits) -> None:
    clock = FakeClock(500.0)
    store = make_store(clock=clock)
    store.start(commits)
    config = {"lr": 0.001, "layers": [64, 32], "opt": {"name": "adam"}}
    store.open_stream(hello(name="mnist", project="demo", config=config, host="gpu1", framework="keras",
                            rank=1, world_size=2))  # fmt: skip
    assert store.flush()
    run = store.get_run(RUN)
    assert (run.name, run.project, run.config, run.host, run.framework) == ("mnist", "demo", config, "gpu1", "keras")
    assert (run.rank, run.world_size, run.status, run.started, run.finished) == (1, 2, "running", 500.0, None)
    clock.now = 510.0
    store.submit(STREAM, Finish(RUN, 1, 1.7e9, "crashed"))
    assert store.flush()
    run = store.get_run(RUN)
    assert (run.status, run.finished, run.last_seen) == ("crashed", 510.0, 510.0)  # the server's clock, not 1.7e9
    store.open_stream(hello(name="mnist"))
    assert store.flush()
    assert (store.get_run(RUN).status, store.get_run(RUN).finished) == ("running", None)


def test_duplicate_seq_is_refused_and_not_stored(store: SQLiteStore, db_path: Path) -> None:
    assert store.submit(STREAM, scalars(1, [0, 1], [1.0, 2.0]))
    assert not store.submit(STREAM, scalars(1, [0, 1], [1.0, 2.0]))
    assert store.submit(STREAM, scalars(2, [2], [3.0]))
    assert not store.submit(STREAM, scalars(1, [0, 1], [1.0, 2.0]))
    assert store.flush()
    assert scalar_count(db_path) == 3


def test_dedupe_survives_close_and_reopen(make_store: MakeStore, commits: Commits, db_path: Path) -> None:
    first = make_store()
    first.start(commits)
    assert first.open_stream(hello()) == 0
    for seq in (1, 2, 3):
        first.submit(STREAM, scalars(seq, [seq], [float(seq)]))
    first.close()
    second = make_store()
    second.start(commits)
    assert second.committed_seq(RUN, STREAM) == 3
    assert second.open_stream(hello()) == 3
    assert not second.submit(STREAM, scalars(3, [3], [3.0]))
    assert second.submit(STREAM, scalars(4, [4], [4.0]))
    assert second.flush()
    assert second.scalars(RUN, "loss").steps.tolist() == [1, 2, 3, 4]
    assert scalar_count(db_path) == 4


def test_writer_refuses_seqs_already_in_the_file(make_store: MakeStore, db_path: Path) -> None:
    # Two stores on one file: the second's in-memory seqs know nothing of the first's writes.
    first, second = make_store(), make_store()
    first_commits, second_commits = Commits(), Commits()
    first.start(first_commits)
    second.start(second_commits)
    first.open_stream(hello())
    second.open_stream(hello())
    for seq in (1, 2, 3):
        first.submit(STREAM, scalars(seq, [seq], [float(seq)]))
    assert first.flush()
    for seq in (1, 2, 3, 4):
        assert second.submit(STREAM, scalars(seq, [seq], [float(seq)]))
    assert second.flush()
    assert scalar_count(db_path) == 4
    assert second_commits.seqs()[-1] == 4
    assert second.committed_seq(RUN, STREAM) == 4


def test_on_commit_reports_highest_seq_per_stream(store: SQLiteStore, commits: Commits) -> None:
    store.open_stream(hello(stream="rank1"))
    for seq in range(1, 21):
        store.submit(STREAM, scalars(seq, [seq], [0.0]))
        if seq <= 5:
            store.submit("rank1", scalars(seq, [seq], [0.0]))
    assert store.flush()
    for stream, top in ((STREAM, 20), ("rank1", 5)):
        seqs = commits.seqs(stream=stream)
        assert seqs == sorted(set(seqs)), "one report per batch, increasing"
        assert seqs[-1] == top
        assert store.committed_seq(RUN, stream) == top
    assert store.committed_seq(RUN, "unknown") == 0


def test_nan_and_infinities_round_trip(store: SQLiteStore) -> None:
    values = [1.0, np.nan, np.inf, -np.inf, -0.5]
    store.submit(STREAM, scalars(1, range(5), values))
    store.submit(STREAM, histogram(2, 0, mean=np.nan, std=np.inf, edges=np.array([-np.inf, 0.0, np.inf])))
    assert store.flush()
    got = store.scalars(RUN, "loss").values
    assert np.array_equal(got, values, equal_nan=True)
    hist = store.histograms(RUN, "dense/kernel")[0]
    assert np.isnan(hist.mean) and hist.std == np.inf
    assert hist.edges.tolist() == [-np.inf, 0.0, np.inf]


def test_scalars_step_range(store: SQLiteStore) -> None:
    store.submit(STREAM, scalars(1, range(100), np.arange(100.0)))
    assert store.flush()
    assert store.scalars(RUN, "loss", start=10, end=14).steps.tolist() == [10, 11, 12, 13, 14]
    assert store.scalars(RUN, "loss", start=95).steps.tolist() == [95, 96, 97, 98, 99]
    assert store.scalars(RUN, "loss", end=2).steps.tolist() == [0, 1, 2]
    assert len(store.scalars(RUN, "loss", start=200).steps) == 0


def test_scalars_decimated_to_max_points(store: SQLiteStore) -> None:
    values = np.sin(np.arange(10_000) / 100.0)
    values[4321] = 50.0
    values[777] = np.nan
    store.submit(STREAM, scalars(1, range(10_000), values))
    assert store.flush()
    series = store.scalars(RUN, "loss", max_points=200)
    assert 100 < len(series.steps) <= 200
    assert series.steps[0] == 0 and series.steps[-1] == 9_999
    assert 4321 in series.steps and 777 in series.steps
    assert np.array_equal(series.values, values[series.steps], equal_nan=True)
    assert np.array_equal(series.wall, 1.7e9 + series.steps / 10)
    assert len(store.scalars(RUN, "loss", start=0, end=99, max_points=200).steps) == 100
    for tiny in (1, 2, 3, 4, 5, 7):
        assert 1 <= len(store.scalars(RUN, "loss", max_points=tiny).steps) <= tiny
    with pytest.raises(ValueError, match="max_points"):
        store.scalars(RUN, "loss", max_points=0)


def test_histograms_limit_keeps_latest_ascending(store: SQLiteStore) -> None:
    for step in range(10):
        store.submit(STREAM, histogram(step + 1, step * 100))
    assert store.flush()
    assert store.histogram_names(RUN) == ["dense/kernel"]
    assert [h.step for h in store.histograms(RUN, "dense/kernel", limit=3)] == [700, 800, 900]
    assert [h.step for h in store.histograms(RUN, "dense/kernel", start=100, end=300)] == [100, 200, 300]
    assert [h.step for h in store.histograms(RUN, "dense/kernel", end=500, limit=2)] == [400, 500]
    assert len(store.histograms(RUN, "dense/kernel")) == 10


def test_predictions_events_and_data_keep_the_latest(store: SQLiteStore) -> None:
    for i, step in enumerate(range(0, 50, 10)):
        outputs = np.full((2, 2), step / 100.0)
        assert store.submit(STREAM, Predictions(RUN, 2 * i + 1, "val", step, 1.7e9, "regression", outputs, outputs))
        assert store.submit(STREAM, Event(RUN, 2 * i + 2, step, 1.7e9, "info", f"epoch {step}"))
    store.submit(STREAM, DataSummary(RUN, 300, "train", 0, 1.7e9, ("a",), np.zeros((1, 3)), np.ones((1, 2))))
    store.submit(STREAM, DataSummary(RUN, 301, "train", 5, 1.7e9, ("b",), np.zeros((1, 3)), np.ones((1, 2))))
    assert store.flush()
    assert [p.step for p in store.predictions(RUN)] == [40]
    assert [p.step for p in store.predictions(RUN, "val", limit=3)] == [20, 30, 40]
    assert store.predictions(RUN, "other") == []
    assert [e.text for e in store.events(RUN, limit=2)] == ["epoch 40", "epoch 30"]
    assert [d.feature_names for d in store.data_summaries(RUN)] == [("b",)]
    assert store.graph(RUN) is None


def test_stale_status_follows_the_injected_clock(make_store: MakeStore, commits: Commits) -> None:
    clock = FakeClock(1_000.0)
    store = make_store(clock=clock, stale_after=60.0)
    store.start(commits)
    store.open_stream(hello())
    store.open_stream(hello(run="done"))
    store.submit(STREAM, Finish("done", 1, 1_000.0, "finished"))
    assert store.flush()
    clock.now = 1_060.0
    assert store.get_run(RUN).status == "running"
    clock.now = 1_061.0
    assert store.get_run(RUN).status == "stale"
    assert store.get_run("done").status == "finished"
    store.submit(STREAM, scalars(1, [1], [0.1]))
    assert store.flush()
    assert (store.get_run(RUN).status, store.get_run(RUN).last_seen) == ("running", 1_061.0)


def test_list_runs_newest_first(make_store: MakeStore, commits: Commits) -> None:
    clock = FakeClock(100.0)
    store = make_store(clock=clock)
    store.start(commits)
    assert store.list_runs() == []
    for run in ("old", "middle", "new"):
        store.open_stream(hello(run=run))
        assert store.flush()
        clock.now += 10
    assert [r.id for r in store.list_runs()] == ["new", "middle", "old"]


def test_not_found_errors_name_the_missing_thing(store: SQLiteStore) -> None:
    store.submit(STREAM, scalars(1, [0], [1.0]))
    assert store.flush()
    with pytest.raises(NotFoundError, match="No run 'nope'"):
        store.get_run("nope")
    with pytest.raises(NotFoundError, match="No scalar series 'acc' in run 'run-1'"):
        store.scalars(RUN, "acc")
    with pytest.raises(NotFoundError, match="No run 'nope'"):
        store.scalars("nope", "loss")
    with pytest.raises(NotFoundError, match="No histogram series 'w' in run 'run-1'"):
        store.histograms(RUN, "w")
    for read in (store.scalar_names, store.histogram_names, store.predictions, store.graph, store.data_summaries,
                 store.events):  # fmt: skip
        with pytest.raises(NotFoundError, match="No run 'nope'"):
            read("nope")
    with pytest.raises(NotFoundError, match="No stream 'other' of run 'run-1'; call open_stream"):
        store.submit("other", scalars(1, [0], [1.0]))


def test_hundred_thousand_points_stored_exactly_once(store: SQLiteStore, db_path: Path) -> None:
    frames = [scalars(seq, np.arange(1000) + 1000 * (seq - 1), np.full(1000, float(seq))) for seq in range(1, 101)]
    for frame in frames:
        assert store.submit(STREAM, frame)
    for frame in frames[::7]:
        assert not store.submit(STREAM, frame)
    assert store.flush(timeout=60)
    assert scalar_count(db_path) == 100_000
    series = store.scalars(RUN, "loss")
    assert np.array_equal(series.steps, np.arange(100_000))
    assert np.array_equal(series.values, np.repeat(np.arange(1.0, 101.0), 1000))
    assert store.get_run(RUN).last_step == 99_999


def test_disk_full_is_reported_then_recovers(store: SQLiteStore, commits: Commits, db_path: Path) -> None:
    store.submit(STREAM, scalars(1, range(100), np.zeros(100)))
    assert store.flush()
    store.set_max_bytes(1)  # SQLite clamps the cap to the current size: any growth fails.
    big = scalars(2, range(100, 50_100), np.ones(50_000))
    assert store.submit(STREAM, big)
    wait_until(lambda: not store.health().ok)
    health = store.health()
    assert health.error is not None and "full" in health.error
    assert health.queue_depth == 1
    with pytest.raises(StoreUnavailable, match="not accepting writes"):
        store.submit(STREAM, scalars(3, [50_100], [2.0]))
    with pytest.raises(StoreUnavailable):
        store.open_stream(hello(stream="late"))
    assert not store.flush(timeout=0.05)
    assert store.committed_seq(RUN, STREAM) == 1
    store.set_max_bytes(None)
    assert store.flush(timeout=60)
    assert store.health().ok and store.health().queue_depth == 0
    assert store.committed_seq(RUN, STREAM) == 2 and commits.seqs()[-1] == 2
    assert not store.submit(STREAM, big)
    assert store.submit(STREAM, scalars(3, [50_100], [2.0]))
    assert store.flush()
    assert scalar_count(db_path) == 100 + 50_000 + 1
    assert np.array_equal(store.scalars(RUN, "loss").steps, np.arange(50_101))


def test_max_bytes_from_the_constructor_caps_the_file(make_store: MakeStore, commits: Commits) -> None:
    store = make_store(max_bytes=64 * 1024)
    store.start(commits)
    store.open_stream(hello())
    store.submit(STREAM, scalars(1, range(20_000), np.zeros(20_000)))
    wait_until(lambda: not store.health().ok)
    assert "full" in str(store.health().error)
    store.set_max_bytes(64 * 1024 * 1024)
    assert store.flush(timeout=60)
    assert len(store.scalars(RUN, "loss").steps) == 20_000


def test_close_commits_everything_queued(make_store: MakeStore, commits: Commits, db_path: Path) -> None:
    store = make_store()
    store.start(commits)
    store.open_stream(hello())
    for seq in range(1, 51):
        store.submit(STREAM, scalars(seq, [seq], [1.0]))
    store.close()
    store.close()
    assert scalar_count(db_path) == 50
    assert commits.seqs()[-1] == 50
    with pytest.raises(StoreError, match="closed"):
        store.list_runs()


def test_in_memory_store_reads_from_other_threads(make_store: MakeStore, commits: Commits) -> None:
    store = make_store(":memory:")
    store.start(commits)
    store.open_stream(hello())
    store.submit(STREAM, scalars(1, range(1000), np.arange(1000.0)))
    assert store.flush()
    with ThreadPoolExecutor(4) as pool:
        lengths = list(pool.map(lambda _: len(store.scalars(RUN, "loss").steps), range(8)))
    assert lengths == [1000] * 8
    other = make_store(":memory:")
    assert other.list_runs() == [], "an in-memory store is readable (and empty) before start"
    other.start(commits)
    assert other.list_runs() == []


def test_reads_run_while_the_writer_writes(store: SQLiteStore) -> None:
    done = threading.Event()

    def read() -> list[int]:
        seen = []
        while not done.is_set():
            seen.append(len(store.scalars(RUN, "loss").steps) if store.scalar_names(RUN) else 0)
        return seen

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(read) for _ in range(2)]
        for seq in range(1, 201):
            store.submit(STREAM, scalars(seq, np.arange(100) + 100 * seq, np.zeros(100)))
        assert store.flush()
        done.set()
        for future in futures:
            seen = future.result()
            assert seen == sorted(seen), "a reader never sees committed points disappear"
    assert len(store.scalars(RUN, "loss").steps) == 20_000


def test_writes_before_start_are_refused(make_store: MakeStore) -> None:
    store = make_store()
    assert not store.health().ok
    with pytest.raises(StoreUnavailable, match="start"):
        store.open_stream(hello())
    with pytest.raises(StoreUnavailable, match="start"):
        store.submit(STREAM, scalars(1, [0], [0.0]))


def test_start_twice_and_bad_arguments(make_store: MakeStore, commits: Commits, tmp_path: Path) -> None:
    store = make_store()
    store.start(commits)
    with pytest.raises(RuntimeError, match="already started"):
        store.start(commits)
    with pytest.raises(ValueError, match="max_bytes"):
        store.set_max_bytes(0)
    with pytest.raises(ValueError, match="batch_max"):
        SQLiteStore(tmp_path / "x.db", batch_max=0)
    with pytest.raises(StoreUnavailable, match="cannot open"):
        make_store(tmp_path / "missing-dir" / "x.db").start(commits)


def test_a_frame_that_cannot_be_stored_is_dropped_and_logged(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    bad = Scalars(RUN, 1, ("loss",), np.array([0]), np.array([0.0]), np.array([5]), np.array([1.0]))
    with caplog.at_level(logging.ERROR, logger="monitor.store.batch"):
        assert store.submit(STREAM, bad)
        assert store.submit(STREAM, scalars(2, [1], [2.0]))
        assert store.flush()
    assert "cannot store scalars seq 1 of run 'run-1'" in caplog.text
    assert store.health().ok
    assert store.committed_seq(RUN, STREAM) == 2
    assert store.scalars(RUN, "loss").steps.tolist() == [1]


def test_queue_bound_refuses_instead_of_growing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "bound.sqlite", max_queue=3, max_bytes=64 * 1024)
    store.start(lambda run, stream, seq: None)
    try:
        store.open_stream(Hello(run="q", stream="s"))
        store.set_max_bytes(4096)  # the writer cannot commit, so the queue fills
        accepted = 0
        with pytest.raises(StoreUnavailable):
            for seq in range(1, 100):
                store.submit("s", Event("q", seq, seq, 0.0, "info", "x" * 2000))
                accepted += 1
        assert accepted <= 3
        store.set_max_bytes(None)
        assert store.flush(10)
    finally:
        store.close()
