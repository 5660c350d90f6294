"""Tests of scalar points stored as chunks (``monitor.store.chunks``), through SQLiteStore and on their own."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.store import SQLiteStore, StoreUnavailable
from monitor.store.chunks import MAX_CHUNK_POINTS, ChunkBuffer
from monitor.store.decimated import DecimatedSeries
from monitor.store.schema import SCHEMA_VERSION
from monitor.wire import Hello, Predictions, Scalars

RUN = "run-1"
STREAM = "rank0"
Array = np.ndarray[Any, Any]


class Reference:
    """Every point stored, in arrival order: what any read must return, computed the slow way."""

    def __init__(self) -> None:
        self.points: dict[str, list[tuple[int, float, float]]] = {}

    def add(self, message: Scalars) -> None:
        for i, step in enumerate(message.steps.tolist()):
            name = message.names[int(message.index[i])]
            self.points.setdefault(name, []).append((step, float(message.wall[i]), float(message.values[i])))

    def read(self, name: str, start: int | None = None, end: int | None = None) -> tuple[Array, Array, Array]:
        low = -(2**63) if start is None else start
        high = 2**63 - 1 if end is None else end
        kept = sorted((p for p in self.points[name] if low <= p[0] <= high), key=lambda p: p[0])  # stable
        return (
            np.array([p[0] for p in kept], np.int64),
            np.array([p[1] for p in kept], np.float64),
            np.array([p[2] for p in kept], np.float64),
        )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    store.start(lambda run, stream, seq: None)
    store.open_stream(Hello(run=RUN, stream=STREAM))
    assert store.flush()
    yield store
    store.close()


class Feed:
    """Submits frames with increasing seqs to the store and the reference."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.reference = Reference()
        self.seq = 0

    def send(self, steps: Any, values: Any, names: tuple[str, ...] = ("loss",), index: Any = None) -> Scalars:
        steps = np.asarray(steps, dtype=np.int64)
        index = np.arange(len(steps)) % len(names) if index is None else np.asarray(index)
        self.seq += 1
        wall = 1.7e9 + np.arange(len(steps), dtype=np.float64) + self.seq * 1e4
        message = Scalars(RUN, self.seq, names, steps, wall, index.astype(np.int64), np.asarray(values, np.float64))
        assert self.store.submit(STREAM, message)
        self.reference.add(message)
        return message

    def check(self, name: str, start: int | None = None, end: int | None = None) -> None:
        assert self.store.flush()
        got = self.store.scalars(RUN, name, start, end)
        for a, b in zip((got.steps, got.wall, got.values), self.reference.read(name, start, end), strict=True):
            assert a.dtype == b.dtype
            assert np.array_equal(a.view(np.uint64), b.view(np.uint64)), (name, start, end)


def chunk_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM scalar_chunks").fetchone()[0])


def test_ranges_cut_through_chunks(store: SQLiteStore) -> None:
    feed = Feed(store)
    for first in range(0, 100, 10):
        feed.send(np.arange(first, first + 10), np.arange(first, first + 10) / 7)
        assert store.flush()  # one transaction per frame: ten chunks of ten points
    ranges: list[tuple[int | None, int | None]] = [
        (None, None), (0, 9), (5, 14), (9, 10), (10, 10), (3, 96), (95, None), (None, 0), (-5, 3), (99, 200),
        (100, 200), (50, 40), (-(2**70), 2**70), (2**63, None), (None, -(2**63) - 1),
    ]  # fmt: skip
    for start, end in ranges:
        feed.check("loss", start, end)


def test_equal_steps_across_chunks_keep_arrival_order(store: SQLiteStore) -> None:
    feed = Feed(store)
    feed.send([5, 6], [1.0, 2.0])
    assert store.flush()
    feed.send([5, 4, 5], [3.0, 4.0, 5.0])  # out of order inside the frame
    feed.send([5, 3], [6.0, 7.0])  # same transaction as the frame before, or the next one
    assert store.flush()
    feed.send([0, 5], [8.0, 9.0])  # a restarted run goes back in steps
    feed.check("loss")
    assert store.scalars(RUN, "loss", start=5, end=5).values.tolist() == [1.0, 3.0, 5.0, 6.0, 9.0]
    feed.check("loss", 4, 5)
    assert store.get_run(RUN).last_step == 6


def test_interleaved_series_in_one_batch(store: SQLiteStore) -> None:
    feed = Feed(store)
    names = ("loss", "acc", "lr")
    rng = np.random.default_rng(3)
    for _ in range(40):  # queued together: the writer groups many frames per transaction
        steps = rng.integers(0, 50, size=30)
        feed.send(steps, rng.normal(size=30), names, index=rng.integers(0, 3, size=30))
    assert store.flush()
    assert store.scalar_names(RUN) == ["acc", "loss", "lr"]
    for name in names:
        for start, end in [(None, None), (10, 20), (25, None)]:
            feed.check(name, start, end)


def test_many_small_chunks(store: SQLiteStore, db_path: Path) -> None:
    feed = Feed(store)
    for step in range(300):
        feed.send([step], [float(step)])
        if step % 3 == 0:
            assert store.flush()
    assert chunk_rows(db_path) >= 100
    feed.check("loss")
    feed.check("loss", 150, 151)
    series = store.scalars(RUN, "loss", max_points=50)
    assert 1 < len(series.steps) <= 50 and series.steps[0] == 0 and series.steps[-1] == 299
    assert store.get_run(RUN).last_step == 299


def test_a_huge_frame_is_cut_into_bounded_chunks(store: SQLiteStore, db_path: Path) -> None:
    feed = Feed(store)
    n = 2 * MAX_CHUNK_POINTS + 123
    feed.send(np.arange(n), np.cos(np.arange(n) / 1000.0))
    assert store.flush()
    assert chunk_rows(db_path) == 3
    feed.check("loss")
    feed.check("loss", MAX_CHUNK_POINTS - 2, MAX_CHUNK_POINTS + 2)
    assert store.get_run(RUN).last_step == n - 1


def test_nan_and_infinities_are_bit_exact(store: SQLiteStore) -> None:
    feed = Feed(store)
    payload_nan = np.array([0x7FF8_0000_DEAD_BEEF], np.uint64).view(np.float64)[0]
    values = [1.0, np.nan, np.inf, -np.inf, -0.0, payload_nan, -np.nan, 5e-324]
    message = feed.send(range(len(values)), values)
    feed.check("loss")
    got = store.scalars(RUN, "loss")
    assert np.array_equal(got.values.view(np.uint64), message.values.view(np.uint64))
    assert got.values.flags.writeable and got.steps.flags.writeable


def test_empty_frames_and_unknown_ranges(store: SQLiteStore, db_path: Path) -> None:
    feed = Feed(store)
    feed.send([], [])
    assert store.flush()
    assert chunk_rows(db_path) == 0
    assert store.get_run(RUN).last_step is None
    feed.send([7], [1.0])
    feed.check("loss", 8, None)
    feed.check("loss", None, 6)


def test_a_resent_frame_adds_no_chunk(db_path: Path) -> None:
    # Two stores on one file: the second resends what the first committed; the writer's dedupe refuses it.
    stores = [SQLiteStore(db_path), SQLiteStore(db_path)]
    try:
        for s in stores:
            s.start(lambda run, stream, seq: None)
            s.open_stream(Hello(run=RUN, stream=STREAM))
        first = Feed(stores[0])
        first.send([0, 1], [1.0, 2.0])
        assert stores[0].flush()
        assert stores[1].submit(STREAM, Scalars(RUN, 1, ("loss",), np.array([0, 1]), np.zeros(2), np.zeros(2, np.int64),
                                                np.full(2, 9.0)))  # fmt: skip
        assert stores[1].flush()
        assert chunk_rows(db_path) == 1
        first.check("loss")
    finally:
        for s in stores:
            s.close()


def test_chunk_buffer_groups_by_series_and_step() -> None:
    buffer = ChunkBuffer()
    buffer.add([11, 12], np.array([0, 1, 0, 1]), np.array([3, 3, 1, 2]), np.zeros(4), np.arange(4.0))
    buffer.add([12], np.array([0, 0]), np.array([2, 0]), np.zeros(2), np.array([4.0, 5.0]))
    with pytest.raises(IndexError):
        buffer.add([13], np.array([1]), np.array([0]), np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="one length"):
        buffer.add([13], np.array([0]), np.array([0, 1]), np.zeros(1), np.zeros(1))
    rows = buffer.rows()
    assert [(sid, first, last, count) for sid, first, last, count, *_ in rows] == [(11, 1, 3, 2), (12, 0, 3, 4)]
    assert np.frombuffer(rows[1][4], "<i8").tolist() == [0, 2, 2, 3]
    assert np.frombuffer(rows[1][6], "<f8").tolist() == [5.0, 3.0, 4.0, 1.0], "equal steps keep arrival order"


def test_prediction_arrays_keep_their_dtype(store: SQLiteStore) -> None:
    outputs = np.asfortranarray(np.random.default_rng(1).random((6, 3)).astype(np.float32))
    cases: list[tuple[Array, Array | None]] = [(outputs, outputs[:, :2]), (outputs.astype(np.float16), None)]
    for seq, (out, embedding) in enumerate(cases, 1):
        store.submit(STREAM, Predictions(RUN, seq, f"p{seq}", 0, 1.7e9, "regression", out, out, (), embedding))
    assert store.flush()
    first, second = store.predictions(RUN, "p1")[0], store.predictions(RUN, "p2")[0]
    assert first.outputs.dtype == np.float32 and np.array_equal(first.outputs, outputs)
    assert first.embedding is not None and np.array_equal(first.embedding, outputs[:, :2])
    assert second.outputs.dtype == np.float16 and np.array_equal(second.outputs, outputs.astype(np.float16))


def test_a_file_of_another_schema_version_is_refused(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    store = SQLiteStore(db_path)
    try:
        with pytest.raises(StoreUnavailable, match="schema version"):
            store.start(lambda run, stream, seq: None)
    finally:
        store.close()


def test_a_decimated_read_is_kept_until_the_series_gains_points(store: SQLiteStore) -> None:
    """``monitor.store.decimated``: the same chunks give the kept copy; a new chunk, a fresh decimation."""
    feed = Feed(store)
    feed.send(np.arange(1000), np.sin(np.arange(1000) / 50.0))
    assert store.flush()
    first = store.scalars(RUN, "loss", max_points=100)
    kept = store._decimated
    assert (kept.hits, kept.misses) == (0, 1)
    first.values[:] = -1.0  # a reader's arrays are its own
    again = store.scalars(RUN, "loss", max_points=100)
    assert (kept.hits, kept.misses) == (1, 1)
    assert np.array_equal(again.steps, first.steps) and not (again.values == -1.0).any()
    assert len(store.scalars(RUN, "loss", 0, 500, max_points=100).steps) <= 100  # other arguments: their own
    assert kept.misses == 2
    feed.send([1000, 1001], [5.0, -5.0])
    assert store.flush()
    grown = store.scalars(RUN, "loss", max_points=100)
    assert kept.misses == 3 and grown.steps[-1] == 1001 and grown.values.max() == 5.0
    assert store.scalars(RUN, "loss").steps[-1] == 1001  # every point: never kept


def test_decimations_kept_are_bounded_and_the_least_recent_goes_first() -> None:
    kept = DecimatedSeries(max_entries=2)
    points = (np.arange(3), np.zeros(3), np.ones(3))
    kept.put("a", 1, points)
    kept.put("b", 1, points)
    assert kept.get("a", 1) is not None  # a is now the most recent
    kept.put("c", 1, points)
    assert len(kept) == 2 and kept.get("b", 1) is None and kept.get("a", 1) is not None
    assert kept.get("a", 2) is None  # the series gained a chunk since
    kept.put("a", 3, points)
    kept.put("a", 2, (np.arange(1), np.zeros(1), np.ones(1)))  # a slower reader of older chunks: not kept
    assert kept.get("a", 3) is not None
    with pytest.raises(ValueError, match="max_entries"):
        DecimatedSeries(max_entries=0)
