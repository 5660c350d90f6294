"""Writing one batch of queued frames to SQLite in one transaction.

Owns the mapping from each message class to its rows, the series-id cache,
and the rule that makes storage idempotent: a frame whose seq is not above
``streams.last_seq`` of its (run, stream), as read inside the same
transaction, is refused, so a resent frame is never stored twice, even by a
later process on the same file. Scalar points of the frames a transaction
accepts become one ``scalar_chunks`` row per series when it finishes
(``monitor.store.chunks``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.store.blobs import to_blob, to_names
from monitor.store.chunks import INSERT_CHUNK, ChunkBuffer
from monitor.wire import DataMessage, DataSummary, Event, Finish, Graph, Hello, Histogram, Predictions, Scalars

log = logging.getLogger(__name__)

StreamKey = tuple[str, str]
Item = tuple[str, Hello | DataMessage]
"""A queued write: the stream name and the message (a ``Hello`` or a data frame)."""

_UPSERT_RUN = """
INSERT INTO runs (id, name, project, config, host, framework, rank, world_size, status, started, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, project = excluded.project, config = excluded.config,
    host = excluded.host, framework = excluded.framework, rank = excluded.rank, world_size = excluded.world_size,
    status = 'running', finished = NULL, last_seen = excluded.last_seen
"""
_UPSERT_STREAM = """
INSERT INTO streams (run, stream, last_seq) VALUES (?, ?, ?)
ON CONFLICT (run, stream) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)
"""
_INSERT_HISTOGRAM = "INSERT INTO histograms VALUES (NULL" + ", ?" * 16 + ")"
_INSERT_PREDICTIONS = "INSERT INTO predictions VALUES (NULL" + ", ?" * 15 + ")"
_INSERT_DATA = "INSERT INTO data_summaries VALUES (NULL" + ", ?" * 22 + ")"
_INSERT_EVENT = "INSERT INTO events (run, seq, step, wall, level, text) VALUES (?, ?, ?, ?, ?, ?)"
_REPLACE_GRAPH = "INSERT OR REPLACE INTO graphs (run, seq, nodes, edges) VALUES (?, ?, ?, ?)"
_FINISH_RUN = "UPDATE runs SET status = ?, finished = ? WHERE id = ?"
_TOUCH_RUN = "UPDATE runs SET last_seen = ? WHERE id = ?"
_RAISE_LAST_STEP = "UPDATE runs SET last_step = max(coalesce(last_step, ?1), ?1) WHERE id = ?2"


@dataclass
class Committed:
    """What one committed batch made durable."""

    seqs: dict[StreamKey, int] = field(default_factory=dict)
    """Highest durable seq of every stream that had data frames in the batch."""
    runs: set[str] = field(default_factory=set)
    """Runs the batch carried frames for."""
    wall: float = 0.0
    """The store clock's time of the transaction, now each run's ``last_seen``."""


def load_streams(conn: sqlite3.Connection) -> dict[StreamKey, int]:
    """Every stream's durable last seq.

    Raises:
        sqlite3.Error: the table cannot be read.
    """
    return {(run, stream): seq for run, stream, seq in conn.execute("SELECT run, stream, last_seq FROM streams")}


class BatchWriter:
    """Writes batches of items, each in one ``BEGIN IMMEDIATE`` transaction.

    Not thread-safe: it belongs to the writer thread, which owns ``conn``.
    A failed batch is rolled back completely and may be written again.
    """

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._clock = clock
        self._series: dict[tuple[str, str, str], int] = {}

    def write(self, items: list[Item]) -> Committed:
        """Write ``items`` in one transaction and commit it.

        Raises:
            sqlite3.Error: the transaction failed and was rolled back; nothing
                of the batch is stored.
        """
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            tx = _Transaction(self._conn, self._series, self._clock())
            for stream, message in items:
                tx.add(stream, message)
            committed = tx.finish()
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        self._series.update(tx.new_series)
        return committed


class _Transaction:
    """The rows of one batch, gathered per table and inserted with ``executemany``."""

    def __init__(self, conn: sqlite3.Connection, series: dict[tuple[str, str, str], int], wall: float) -> None:
        self._conn = conn
        self._series = series
        self.new_series: dict[tuple[str, str, str], int] = {}
        self._last: dict[StreamKey, int] = {}
        self._rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self._points = ChunkBuffer()
        self._last_step: dict[str, int] = {}
        self._committed = Committed(wall=wall)
        self._handlers: dict[type, Callable[[Any], None]] = {
            Scalars: self._scalars, Histogram: self._histogram, Predictions: self._predictions, Graph: self._graph,
            DataSummary: self._data, Event: self._event, Finish: self._finish,
        }  # fmt: skip

    def add(self, stream: str, message: Hello | DataMessage) -> None:
        if isinstance(message, Hello):
            self._hello(message)
            return
        key = (message.run, stream)
        last = self._last_seq(key)
        self._committed.runs.add(message.run)
        self._committed.seqs[key] = max(last, message.seq)
        if message.seq <= last:
            log.debug("seq %d of run %r stream %r is already stored; skipped", message.seq, message.run, stream)
            return
        self._last[key] = message.seq
        try:
            self._handlers[type(message)](message)
        except sqlite3.Error:
            raise
        except Exception:
            # A frame that cannot be turned into rows would fail every retry; it is dropped, its seq consumed.
            log.exception("cannot store %s seq %d of run %r; dropped", message.kind, message.seq, message.run)

    def finish(self) -> Committed:
        self._conn.executemany(INSERT_CHUNK, self._points.rows())
        for sql, rows in self._rows.items():
            self._conn.executemany(sql, rows)
        wall = self._committed.wall
        self._conn.executemany(_TOUCH_RUN, [(wall, run) for run in self._committed.runs])
        self._conn.executemany(_RAISE_LAST_STEP, [(step, run) for run, step in self._last_step.items()])
        self._conn.executemany(_UPSERT_STREAM, [(run, stream, seq) for (run, stream), seq in self._last.items()])
        return self._committed

    def _last_seq(self, key: StreamKey) -> int:
        if key not in self._last:
            row = self._conn.execute("SELECT last_seq FROM streams WHERE run = ? AND stream = ?", key).fetchone()
            self._last[key] = 0 if row is None else int(row[0])
        return self._last[key]

    def _series_id(self, run: str, kind: str, name: str) -> int:
        key = (run, kind, name)
        found = self._series.get(key, self.new_series.get(key))
        if found is None:
            row = self._conn.execute("SELECT id FROM series WHERE run = ? AND kind = ? AND name = ?", key).fetchone()
            if row is None:
                row = (self._conn.execute("INSERT INTO series (run, kind, name) VALUES (?, ?, ?)", key).lastrowid,)
            found = self.new_series[key] = int(row[0])
        return found

    def _hello(self, hello: Hello) -> None:
        wall = self._committed.wall
        config = json.dumps(hello.config, sort_keys=True, default=str)
        self._conn.execute(
            _UPSERT_RUN,
            (hello.run, hello.name, hello.project, config, hello.host, hello.framework, hello.rank,
             hello.world_size, wall, wall),
        )  # fmt: skip
        self._conn.execute(_UPSERT_STREAM, (hello.run, hello.stream, 0))

    def _scalars(self, m: Scalars) -> None:
        ids = [self._series_id(m.run, "scalar", name) for name in m.names]
        self._points.add(ids, m.index, m.steps, m.wall, m.values)
        if len(m.steps):
            top = int(np.max(m.steps))
            self._last_step[m.run] = max(top, self._last_step.get(m.run, top))

    def _histogram(self, m: Histogram) -> None:
        row = (
            self._series_id(m.run, "histogram", m.name), m.seq, m.step, m.wall, *to_blob(m.edges),
            *to_blob(m.counts), m.min, m.max, m.mean, m.std, m.count, m.nonfinite,
        )  # fmt: skip
        self._rows[_INSERT_HISTOGRAM].append(row)

    def _predictions(self, m: Predictions) -> None:
        row = (
            self._series_id(m.run, "predictions", m.name), m.seq, m.step, m.wall, m.task, to_names(m.classes),
            *to_blob(m.y_true), *to_blob(m.outputs), *to_blob(m.embedding),
        )  # fmt: skip
        self._rows[_INSERT_PREDICTIONS].append(row)

    def _graph(self, m: Graph) -> None:
        nodes = [[n.name, n.type, n.output_shape, n.params, n.trainable] for n in m.nodes]
        self._conn.execute(_REPLACE_GRAPH, (m.run, m.seq, json.dumps(nodes), json.dumps([list(e) for e in m.edges])))

    def _data(self, m: DataSummary) -> None:
        row = (
            self._series_id(m.run, "data", m.name), m.seq, m.step, m.wall, to_names(m.feature_names),
            to_names(m.label_names), to_names(m.sample_names), *to_blob(m.edges), *to_blob(m.counts),
            *to_blob(m.label_counts), *to_blob(m.sample), *to_blob(m.sample_labels),
        )  # fmt: skip
        self._rows[_INSERT_DATA].append(row)

    def _event(self, m: Event) -> None:
        self._rows[_INSERT_EVENT].append((m.run, m.seq, m.step, m.wall, m.level, m.text))

    def _finish(self, m: Finish) -> None:
        # The server's clock, as for started and last_seen (not the message's wall): durations stay
        # whole when a producer's clock is off.
        self._conn.execute(_FINISH_RUN, (m.status, self._committed.wall, m.run))
