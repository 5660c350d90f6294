"""The default run store: one SQLite file in WAL mode, one writer thread.

``SQLiteStore`` implements ``monitor.store.base.RunStore``. Writes are
queued without touching disk and committed in batches by the writer
(``monitor.store.writer``); reads use thread-local connections
(``monitor.store.readers``) and the queries in ``monitor.store.reads`` and
``monitor.store.chunks``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from monitor.decimate import minmax_indices
from monitor.store import reads
from monitor.store.base import (
    CommitListener,
    NotFoundError,
    RunInfo,
    ScalarSeries,
    StoreHealth,
    StoreUnavailable,
)
from monitor.store.batch import StreamKey, load_streams
from monitor.store.chunks import newest_chunk, read_points
from monitor.store.decimated import DecimatedSeries
from monitor.store.readers import ReaderPool
from monitor.store.schema import SCHEMA, Database, open_writer
from monitor.store.writer import Writer
from monitor.wire import DataMessage, DataSummary, Event, Graph, Hello, Histogram, Predictions

log = logging.getLogger(__name__)

DEFAULT_BATCH_MAX = 256
DEFAULT_MAX_QUEUE = 20_000
"""Frames allowed to wait for the writer before writes are refused (bounded memory)."""


class SQLiteStore:
    """A ``RunStore`` on stdlib ``sqlite3``.

    Invariants: a frame is stored at most once per (run, stream, seq), even
    across restarts on the same file; ``on_commit`` reports seqs in
    increasing order per stream; ``open_stream`` and ``submit`` never touch
    disk.

    Thread safety: ``open_stream``, ``submit`` and ``committed_seq`` belong
    to one thread (the event loop); reads, ``health``, ``flush`` and
    ``set_max_bytes`` may be called from any thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        stale_after: float = 300.0,
        clock: Callable[[], float] = time.time,
        max_bytes: int | None = None,
        batch_max: int = DEFAULT_BATCH_MAX,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        """Describe a store; nothing is opened on disk until ``start`` or a read.

        Reads work without ``start`` on an existing file (as the CLI uses
        them); writes need ``start``.

        Args:
            path: The database file (created if missing), or ``":memory:"``
                for a private in-memory store that lives until ``close``.
            stale_after: Seconds of silence after which a running run reads
                as ``stale``.
            clock: Seconds since the epoch; stamps ``started`` and
                ``last_seen`` and decides staleness.
            max_bytes: Cap on the database size (``PRAGMA max_page_count``);
                a write that would exceed it fails like a full disk.
            batch_max: Most queued frames committed in one transaction.
            max_queue: Most frames waiting for the writer; beyond it writes
                are refused with ``StoreUnavailable`` until it catches up, so a
                slow disk bounds memory instead of growing it.

        Raises:
            ValueError: ``batch_max`` below 1 or ``max_bytes`` not positive.
        """
        if batch_max < 1 or max_queue < 1:
            raise ValueError(f"batch_max and max_queue must be at least 1, got {batch_max} and {max_queue}")
        self._max_queue = max_queue
        _check_max_bytes(max_bytes)
        self._db = Database.at(path)
        self._stale_after = stale_after
        self._clock = clock
        self._max_bytes = max_bytes
        self._batch_max = batch_max
        self._accepted: dict[StreamKey, int] = {}
        self._writer: Writer | None = None
        self._readers = ReaderPool(self._db)
        self._decimated = DecimatedSeries()
        self._anchor = self._memory_anchor(self._db)

    @staticmethod
    def _memory_anchor(db: Database) -> sqlite3.Connection | None:
        """For ``":memory:"``, a connection that keeps the database (with its schema) alive."""
        if not db.memory:
            return None
        anchor = db.connect()
        anchor.executescript(SCHEMA)
        return anchor

    def __repr__(self) -> str:
        return f"SQLiteStore({self._db.label!r})"

    def start(self, on_commit: CommitListener) -> None:
        """Open the database, load every stream's committed seq, start the writer.

        Raises:
            StoreUnavailable: the database cannot be opened or its schema created.
            RuntimeError: the store was already started.
        """
        if self._writer is not None:
            raise RuntimeError(f"{self!r} is already started; start it once")
        try:
            conn = open_writer(self._db)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open run store {self._db.label}: {exc}") from exc
        try:
            committed = load_streams(conn)
            writer = Writer(conn, self._clock, committed, self._batch_max, self._max_bytes)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(f"cannot read run store {self._db.label}: {exc}") from exc
        self._accepted = dict(committed)
        self._writer = writer
        writer.start(on_commit)
        log.info("run store %s open with %d streams", self._db.label, len(committed))

    def close(self) -> None:
        """Commit everything queued, stop the writer, close every connection.

        Safe to call twice, or without ``start``. If writes keep failing, the
        frames still queued are dropped after a few attempts and logged; they
        were never acknowledged, so their producers resend them.
        """
        if self._writer is not None:
            self._writer.close()
        self._readers.close()
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far is committed; False on timeout."""
        return self._writer is None or self._writer.flush(timeout)

    def health(self) -> StoreHealth:
        """Write health and queue depth; never blocks on disk."""
        if self._writer is None:
            return StoreHealth(ok=False, queue_depth=0, error="not started")
        return self._writer.health()

    def set_max_bytes(self, max_bytes: int | None) -> None:
        """Change the size cap from the writer's next transaction on.

        A cap below the current size holds the database at its current size.
        ``None`` lifts the cap. A batch failing on the old cap is retried
        promptly after this call.

        Raises:
            ValueError: ``max_bytes`` is not positive.
        """
        _check_max_bytes(max_bytes)
        self._max_bytes = max_bytes
        if self._writer is not None:
            self._writer.set_max_bytes(max_bytes)

    def open_stream(self, hello: Hello) -> int:
        """Register or resume ``hello.run`` and its stream; return the stream's committed seq.

        The run's metadata is upserted (status back to ``running``) by the
        writer; nothing touches disk here.

        Raises:
            StoreUnavailable: not started, or writes are failing.
        """
        writer = self._writable()
        key = (hello.run, hello.stream)
        self._accepted.setdefault(key, writer.committed(key))
        writer.put((hello.stream, hello))
        return writer.committed(key)

    def submit(self, stream: str, message: DataMessage) -> bool:
        """Queue a frame; False (nothing queued) if its seq was already accepted.

        Raises:
            StoreUnavailable: not started, or writes are failing; nothing queued.
            NotFoundError: the (run, stream) was never opened with ``open_stream``.
        """
        writer = self._writable()
        key = (message.run, stream)
        last = self._accepted.get(key)
        if last is None:
            raise NotFoundError(f"No stream {stream!r} of run {message.run!r}; call open_stream(hello) first")
        if message.seq <= last:
            return False
        self._accepted[key] = message.seq
        writer.put((stream, message))
        return True

    def committed_seq(self, run: str, stream: str) -> int:
        """Highest seq of the stream known durable (0 if none)."""
        return 0 if self._writer is None else self._writer.committed((run, stream))

    def _writable(self) -> Writer:
        if self._writer is None:
            raise StoreUnavailable(f"{self!r} is not started; call start(on_commit) first")
        health = self._writer.health()
        if not health.ok:
            raise StoreUnavailable(f"run store {self._db.label} is not accepting writes: {health.error}")
        if health.queue_depth >= self._max_queue:
            raise StoreUnavailable(f"the writer is {health.queue_depth} frames behind (max_queue={self._max_queue})")
        return self._writer

    def list_runs(self) -> list[RunInfo]:
        """All runs, newest (latest started) first."""
        with self._readers.connection() as conn:
            rows = reads.run_rows(conn)
        return [self._run_info(row) for row in rows]

    def get_run(self, run: str) -> RunInfo:
        """One run. Raises ``NotFoundError`` naming it."""
        with self._readers.connection() as conn:
            return self._run_info(reads.run_row(conn, run))

    def _run_info(self, row: reads.Row) -> RunInfo:
        seen = None if self._writer is None else self._writer.last_seen(row[0])
        return reads.to_run_info(row, self._clock(), self._stale_after, seen)

    def scalar_names(self, run: str) -> list[str]:
        """Names of the run's scalar series, sorted. Raises ``NotFoundError``."""
        with self._readers.connection() as conn:
            return reads.series_names(conn, run, "scalar")

    def scalars(
        self,
        run: str,
        name: str,
        start: int | None = None,
        end: int | None = None,
        max_points: int | None = None,
    ) -> ScalarSeries:
        """A series within [start, end] steps (inclusive), ordered by step.

        A decimated read is kept and handed out again (copied) while the
        series gains no chunk (``monitor.store.decimated``).

        With ``max_points`` and more points than that in range, the series is
        decimated with ``minmax_indices`` over the steps, never to more than
        ``max_points`` points: into ``(max_points - 2) // 2`` buckets if no
        value is NaN (per bucket its min and max, plus the first and last
        point), else into ``(max_points - 2) // 3`` buckets (one NaN per
        bucket is kept too). Below 8 points that leaves a single bucket,
        whose 4 or 5 points are thinned evenly to ``max_points``.

        Raises:
            NotFoundError: unknown run, or no such series in the run.
            ValueError: ``max_points`` below 1.
        """
        if max_points is not None and max_points < 1:
            raise ValueError(f"max_points must be at least 1 (or None for every point), got {max_points}")
        with self._readers.connection() as conn:
            sid = reads.series_id(conn, run, "scalar", name)
            if max_points is None:
                steps, wall, values = read_points(conn, sid, start, end)
                return ScalarSeries(run=run, name=name, steps=steps, wall=wall, values=values)
            key, newest = (sid, start, end, max_points), newest_chunk(conn, sid)
            kept = self._decimated.get(key, newest)  # the same chunks as when decimated: the same points
            if kept is None:
                steps, wall, values = read_points(conn, sid, start, end)
        if kept is not None:
            return ScalarSeries(run, name, *kept)
        if len(steps) > max_points:
            keep = _decimate(steps, values, max_points)
            steps, wall, values = steps[keep], wall[keep], values[keep]
        self._decimated.put(key, newest, (steps, wall, values))
        return ScalarSeries(run=run, name=name, steps=steps, wall=wall, values=values)

    def histogram_names(self, run: str) -> list[str]:
        """Names of the run's histogram series, sorted. Raises ``NotFoundError``."""
        with self._readers.connection() as conn:
            return reads.series_names(conn, run, "histogram")

    def histograms(
        self, run: str, name: str, start: int | None = None, end: int | None = None, limit: int | None = None
    ) -> list[Histogram]:
        """Histograms in [start, end] by ascending step; ``limit`` keeps the latest N.

        Raises:
            NotFoundError: unknown run, or no such histogram series in the run.
        """
        with self._readers.connection() as conn:
            return reads.histograms(conn, run, name, (start, end), limit)

    def predictions(self, run: str, name: str | None = None, limit: int = 1) -> list[Predictions]:
        """The latest ``limit`` predictions (of ``name``, or of any name), ascending by step.

        Raises:
            NotFoundError: unknown run (an unknown name gives an empty list).
        """
        with self._readers.connection() as conn:
            return reads.predictions(conn, run, name, limit)

    def graph(self, run: str) -> Graph | None:
        """The run's model graph, if sent. Raises ``NotFoundError`` for an unknown run."""
        with self._readers.connection() as conn:
            return reads.graph(conn, run)

    def data_summaries(self, run: str) -> list[DataSummary]:
        """The latest data summary per name, sorted by name. Raises ``NotFoundError`` for an unknown run."""
        with self._readers.connection() as conn:
            return reads.data_summaries(conn, run)

    def events(self, run: str, limit: int = 100) -> list[Event]:
        """The latest ``limit`` events, newest first. Raises ``NotFoundError`` for an unknown run."""
        with self._readers.connection() as conn:
            return reads.events(conn, run, limit)


def _decimate(steps: np.ndarray[Any, Any], values: np.ndarray[Any, Any], max_points: int) -> np.ndarray[Any, Any]:
    per_bucket = 3 if bool(np.isnan(values).any()) else 2
    keep = minmax_indices(steps, values, max(1, (max_points - 2) // per_bucket))
    if len(keep) > max_points:
        keep = keep[np.linspace(0, len(keep) - 1, max_points).astype(np.intp)]
    return keep


def _check_max_bytes(max_bytes: int | None) -> None:
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be positive bytes or None for no cap, got {max_bytes}")
