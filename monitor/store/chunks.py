"""Scalar points stored as arrays: one ``scalar_chunks`` row per series and batch.

Owns the layout of a chunk and both directions of it. On write, the points
of every scalar frame a transaction accepts are gathered (``ChunkBuffer``)
and, when the transaction finishes, grouped by series with one stable sort
(no Python loop per point), so that each series gets a row (or several, of
at most ``MAX_CHUNK_POINTS``) holding its steps (little-endian int64), wall
times and values (little-endian float64) as raw bytes, sorted by step with
points of equal step in arrival order. One chunk per series and batch rather
than per frame: a batch of 256 one-point frames is one row per series. On read (``read_points``), the chunks
of a series that overlap a step range are fetched in insertion order, joined,
cut to the range and, only if chunks overlap, stably re-sorted by step.

Chunk ids increase with insertion and points within a chunk keep arrival
order among equal steps, so "order by (step, chunk id, position)" is the
arrival order that the old one-row-per-point table gave with
``ORDER BY step, rowid``. Values are stored as bytes, so NaN (with its
payload) and the infinities read back bit for bit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
ChunkRow = tuple[int, int, int, int, bytes, bytes, bytes]
"""``(series_id, first_step, last_step, count, steps, wall, values)`` of one chunk."""

STEPS = np.dtype("<i8")
FLOATS = np.dtype("<f8")
MAX_CHUNK_POINTS = 1 << 16
"""Most points in one chunk: bounds what a narrow range read decodes in vain."""
_MIN_STEP, _MAX_STEP = -(2**63), 2**63 - 1

INSERT_CHUNK = (
    "INSERT INTO scalar_chunks (series_id, first_step, last_step, count, steps, wall, value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_NEWEST_CHUNK = "SELECT coalesce(max(id), 0) FROM scalar_chunks WHERE series_id = ?"
_SELECT_CHUNKS = (
    "SELECT steps, wall, value FROM scalar_chunks"
    " WHERE series_id = ? AND last_step >= ? AND first_step <= ? ORDER BY id"
)


class ChunkBuffer:
    """The scalar points of one transaction, in arrival order, until they become chunk rows.

    Series get small local numbers in the order they first appear, so that
    grouping a batch by series is one radix sort of 8- or 16-bit keys.

    Not thread-safe: it belongs to one transaction on the writer thread.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[Array, Array, Array, Array]] = []
        self._local: dict[int, int] = {}
        """Series id -> local number; insertion order is local-number order."""

    def add(self, ids: Sequence[int], index: Array, steps: Array, wall: Array, values: Array) -> None:
        """Queue one frame's points: point ``i`` belongs to series ``ids[index[i]]``.

        Everything that can be wrong with a frame is found here, so that
        ``rows`` cannot fail on what was added.

        Raises:
            IndexError: ``index`` points outside ``ids``.
            ValueError: the arrays are not one-dimensional and of one length,
                or cannot be read as integers (index, steps) and floats.
            TypeError: an array of a dtype numpy cannot convert.
        """
        local = np.array([self._local.setdefault(sid, len(self._local)) for sid in ids], dtype=np.int64)
        columns = (
            local[np.asarray(index, dtype=np.intp)], np.asarray(steps, dtype=STEPS),
            np.asarray(wall, dtype=FLOATS), np.asarray(values, dtype=FLOATS),
        )  # fmt: skip
        shapes = {column.shape for column in columns}
        if len(shapes) != 1 or columns[0].ndim != 1:
            raise ValueError(f"scalar arrays must be 1-d and of one length, got shapes {sorted(shapes)}")
        if len(columns[0]):
            self._parts.append(columns)

    def rows(self) -> list[ChunkRow]:
        """One row per series (more for a series above ``MAX_CHUNK_POINTS``), sorted by step within each."""
        if not self._parts:
            return []
        key, steps, wall, values = (np.concatenate(column) for column in zip(*self._parts, strict=True))
        ends = np.cumsum(np.bincount(key, minlength=len(self._local)))
        order = _group(key, steps, ends)
        steps, wall, values = steps[order], wall[order], values[order]
        starts = np.concatenate(([0], ends[:-1]))
        return [
            (sid, int(steps[a]), int(steps[b - 1]), b - a,
             steps[a:b].tobytes(), wall[a:b].tobytes(), values[a:b].tobytes())
            for sid, first, last in zip(self._local, starts.tolist(), ends.tolist(), strict=True)
            for a, b in _pieces(first, last)
        ]  # fmt: skip


def _group(key: Array, steps: Array, ends: Array) -> Array:
    """The stable order that groups points by ``key`` and sorts each group by step.

    Points usually arrive in step order per series, so one radix sort on the
    key suffices; only if a group is then out of step order does it fall back
    to a (stable) lexsort on (key, step).
    """
    small = np.uint8 if len(ends) <= 1 << 8 else np.uint16 if len(ends) <= 1 << 16 else np.int64
    order = np.argsort(key.astype(small), kind="stable")
    grouped = steps[order]
    down = grouped[1:] < grouped[:-1]
    inner = ends[:-1]
    down[inner[(inner > 0) & (inner < len(steps))] - 1] = False  # a step may drop where a group starts
    if bool(down.any()):
        order = np.lexsort((steps, key))
    return order


def _pieces(first: int, last: int) -> list[tuple[int, int]]:
    """[first, last) cut into runs of at most ``MAX_CHUNK_POINTS`` (none if empty)."""
    return [(a, min(a + MAX_CHUNK_POINTS, last)) for a in range(first, last, MAX_CHUNK_POINTS)]


def newest_chunk(conn: sqlite3.Connection, sid: int) -> int:
    """The id of series ``sid``'s newest chunk (0 if it has none): it changes whenever the series gains points.

    Raises:
        sqlite3.Error: the query failed.
    """
    return int(conn.execute(_NEWEST_CHUNK, (sid,)).fetchone()[0])


def read_points(conn: sqlite3.Connection, sid: int, start: int | None, end: int | None) -> tuple[Array, Array, Array]:
    """Steps (int64), wall times and values (float64) of series ``sid`` in [start, end], by step.

    Points of equal step come in arrival order. The arrays are new and writable.

    Raises:
        sqlite3.Error: the query failed.
        ValueError: a stored chunk is corrupt (blob lengths do not agree).
    """
    low = _MIN_STEP if start is None else start
    high = _MAX_STEP if end is None else end
    if low > high or low > _MAX_STEP or high < _MIN_STEP:
        return _empty()
    low, high = max(low, _MIN_STEP), min(high, _MAX_STEP)
    chunks = conn.execute(_SELECT_CHUNKS, (sid, low, high)).fetchall()
    if not chunks:
        return _empty()
    steps = np.concatenate([np.frombuffer(c[0], STEPS) for c in chunks]).astype(np.int64, copy=False)
    wall = np.concatenate([np.frombuffer(c[1], FLOATS) for c in chunks]).astype(np.float64, copy=False)
    values = np.concatenate([np.frombuffer(c[2], FLOATS) for c in chunks]).astype(np.float64, copy=False)
    if not len(steps) == len(wall) == len(values):
        raise ValueError(f"scalar chunks of series {sid} are corrupt: {len(steps)} steps, {len(values)} values")
    if start is not None or end is not None:
        # A chunk overlapping the range may hold points on either side of it.
        inside = (steps >= low) & (steps <= high)
        if not inside.all():
            steps, wall, values = steps[inside], wall[inside], values[inside]
    if len(steps) > 1 and bool((steps[1:] < steps[:-1]).any()):
        # Chunks overlap in steps (a series restarted, or frames out of order): merge them, stably.
        order = np.argsort(steps, kind="stable")
        steps, wall, values = steps[order], wall[order], values[order]
    return steps, wall, values


def _empty() -> tuple[Array, Array, Array]:
    return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64)
