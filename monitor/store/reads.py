"""Read queries of the SQLite run store, returning the wire's record types.

Every function takes an open connection and is safe to call from any thread
that owns that connection. Unknown runs and series raise ``NotFoundError``
with a message naming them; NULL in a REAL column (SQLite's NaN) reads back
as NaN. Scalar points are read by ``monitor.store.chunks.read_points``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import numpy as np

from monitor.store.base import NotFoundError, RunInfo, RunStatus
from monitor.store.blobs import from_blob, from_names, required_blob
from monitor.wire import DataSummary, Event, Graph, GraphNode, Histogram, Predictions

Array = np.ndarray[Any, Any]
Row = tuple[Any, ...]

_RUN_COLUMNS = (
    "id, name, project, status, started, last_seen, finished, last_step, config, host, framework, rank, world_size"
)
_HISTOGRAM_COLUMNS = (
    "seq, step, wall, edges, edges_dtype, edges_shape, counts, counts_dtype, counts_shape,"
    " min, max, mean, std, count, nonfinite"
)
_PREDICTION_COLUMNS = (
    "s.name, p.seq, p.step, p.wall, p.task, p.classes, p.y_true, p.y_true_dtype, p.y_true_shape,"
    " p.outputs, p.outputs_dtype, p.outputs_shape, p.embedding, p.embedding_dtype, p.embedding_shape"
)
_DATA_COLUMNS = (
    "s.name, d.seq, d.step, d.wall, d.feature_names, d.edges, d.edges_dtype, d.edges_shape, d.counts,"
    " d.counts_dtype, d.counts_shape, d.label_names, d.label_counts, d.label_counts_dtype, d.label_counts_shape,"
    " d.sample_names, d.sample, d.sample_dtype, d.sample_shape, d.sample_labels, d.sample_labels_dtype,"
    " d.sample_labels_shape"
)


def _real(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def run_rows(conn: sqlite3.Connection) -> list[Row]:
    """Every run's row, newest (latest started) first."""
    return conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started DESC, rowid DESC").fetchall()


def run_row(conn: sqlite3.Connection, run: str) -> Row:
    """One run's row. Raises ``NotFoundError`` naming the run."""
    row: Row | None = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run,)).fetchone()
    if row is None:
        raise NotFoundError(f"No run {run!r} in the store")
    return row


def to_run_info(row: Row, now: float, stale_after: float, seen: float | None) -> RunInfo:
    """A run row as ``RunInfo``; a running run silent for over ``stale_after`` is ``stale``.

    ``seen`` is a fresher ``last_seen`` known in memory, if any.
    """
    last_seen = max(row[5], seen) if seen is not None else row[5]
    status: RunStatus = row[3]
    if status == "running" and now - last_seen > stale_after:
        status = "stale"
    return RunInfo(
        id=row[0], name=row[1], project=row[2], status=status, started=row[4], last_seen=last_seen,
        finished=row[6], last_step=row[7], config=json.loads(row[8]), host=row[9], framework=row[10],
        rank=row[11], world_size=row[12],
    )  # fmt: skip


def series_names(conn: sqlite3.Connection, run: str, kind: str) -> list[str]:
    """Sorted names of the run's series of ``kind``. Raises ``NotFoundError`` for an unknown run."""
    run_row(conn, run)
    rows = conn.execute("SELECT name FROM series WHERE run = ? AND kind = ? ORDER BY name", (run, kind))
    return [name for (name,) in rows]


def series_id(conn: sqlite3.Connection, run: str, kind: str, name: str) -> int:
    """The id of a series. Raises ``NotFoundError`` naming the run or the series."""
    row = conn.execute("SELECT id FROM series WHERE run = ? AND kind = ? AND name = ?", (run, kind, name)).fetchone()
    if row is None:
        run_row(conn, run)
        raise NotFoundError(f"No {kind} series {name!r} in run {run!r}")
    return int(row[0])


def _step_range(start: int | None, end: int | None) -> tuple[str, list[int]]:
    clauses, params = [], []
    if start is not None:
        clauses.append(" AND step >= ?")
        params.append(start)
    if end is not None:
        clauses.append(" AND step <= ?")
        params.append(end)
    return "".join(clauses), params


def histograms(
    conn: sqlite3.Connection, run: str, name: str, steps: tuple[int | None, int | None], limit: int | None
) -> list[Histogram]:
    """The series' histograms with steps in [start, end], the latest ``limit``, ascending by step.

    Raises:
        NotFoundError: unknown run, or no such histogram series in it.
    """
    sid = series_id(conn, run, "histogram", name)
    where, params = _step_range(*steps)
    sql = f"SELECT {_HISTOGRAM_COLUMNS} FROM histograms WHERE series_id = ?{where} ORDER BY step DESC, id DESC LIMIT ?"
    rows = conn.execute(sql, [sid, *params, -1 if limit is None else limit]).fetchall()
    return [_histogram(run, name, row) for row in reversed(rows)]


def _histogram(run: str, name: str, r: Row) -> Histogram:
    return Histogram(
        run=run, seq=r[0], name=name, step=r[1], wall=_real(r[2]), edges=required_blob(*r[3:6]),
        counts=required_blob(*r[6:9]), min=_real(r[9]), max=_real(r[10]), mean=_real(r[11]), std=_real(r[12]),
        count=r[13], nonfinite=r[14],
    )  # fmt: skip


def predictions(conn: sqlite3.Connection, run: str, name: str | None, limit: int) -> list[Predictions]:
    """The run's latest ``limit`` predictions (of series ``name``, or any), ascending by step."""
    run_row(conn, run)
    named = "" if name is None else " AND s.name = ?"
    sql = (
        f"SELECT {_PREDICTION_COLUMNS} FROM predictions p JOIN series s ON s.id = p.series_id"
        f" WHERE s.run = ? AND s.kind = 'predictions'{named} ORDER BY p.step DESC, p.id DESC LIMIT ?"
    )
    params: list[Any] = [run] if name is None else [run, name]
    rows = conn.execute(sql, [*params, limit]).fetchall()
    return [_predictions(run, row) for row in reversed(rows)]


def _predictions(run: str, r: Row) -> Predictions:
    return Predictions(
        run=run, seq=r[1], name=r[0], step=r[2], wall=_real(r[3]), task=r[4], classes=from_names(r[5]),
        y_true=required_blob(*r[6:9]), outputs=required_blob(*r[9:12]), embedding=from_blob(*r[12:15]),
    )  # fmt: skip


def graph(conn: sqlite3.Connection, run: str) -> Graph | None:
    """The run's model graph, or ``None``. Raises ``NotFoundError`` for an unknown run."""
    run_row(conn, run)
    row = conn.execute("SELECT seq, nodes, edges FROM graphs WHERE run = ?", (run,)).fetchone()
    if row is None:
        return None
    nodes = tuple(GraphNode(*node) for node in json.loads(row[1]))
    edges = tuple((src, dst) for src, dst in json.loads(row[2]))
    return Graph(run=run, seq=row[0], nodes=nodes, edges=edges)


def data_summaries(conn: sqlite3.Connection, run: str) -> list[DataSummary]:
    """The latest data summary of each name, sorted by name. Raises ``NotFoundError`` for an unknown run."""
    run_row(conn, run)
    latest = "SELECT id FROM data_summaries WHERE series_id = d.series_id ORDER BY step DESC, id DESC LIMIT 1"
    sql = (
        f"SELECT {_DATA_COLUMNS} FROM data_summaries d JOIN series s ON s.id = d.series_id"
        f" WHERE s.run = ? AND s.kind = 'data' AND d.id = ({latest}) ORDER BY s.name"
    )
    return [_data(run, row) for row in conn.execute(sql, (run,))]


def _data(run: str, r: Row) -> DataSummary:
    return DataSummary(
        run=run, seq=r[1], name=r[0], step=r[2], wall=_real(r[3]), feature_names=from_names(r[4]),
        edges=required_blob(*r[5:8]), counts=required_blob(*r[8:11]), label_names=from_names(r[11]),
        label_counts=from_blob(*r[12:15]), sample_names=from_names(r[15]), sample=from_blob(*r[16:19]),
        sample_labels=from_blob(*r[19:22]),
    )  # fmt: skip


def events(conn: sqlite3.Connection, run: str, limit: int) -> list[Event]:
    """The run's latest ``limit`` events, newest (last stored) first. Raises ``NotFoundError``."""
    run_row(conn, run)
    sql = "SELECT seq, step, wall, level, text FROM events WHERE run = ? ORDER BY id DESC LIMIT ?"
    return [
        Event(run, seq, step, _real(wall), level, text)
        for seq, step, wall, level, text in conn.execute(sql, (run, limit))
    ]
