"""Decimated scalar series kept to be read again while their series gains no chunk.

A dashboard tab opening a run reads each of its series decimated to about
2,000 points: every chunk of the series fetched, decoded and bucketed. For a
series of 100,000 points written at 10,000 points a second (thousands of
small chunks) that took 10-20 ms, and the ten series of such a run 100-200
ms of the executor, while the page waited for the run. A finished run is
read like this again and again: a tab reopened or reloaded, several people
looking at it, the lab screen coming back to it. Chunks are only ever
appended (ids increase; none is changed or removed), so a series whose
newest chunk id is the one it had when it was decimated still has the same
points, and the decimated copy is handed out again. A series still being
written gains chunks, so each read of it decimates afresh, as before.

At most ``MAX_ENTRIES`` decimations are kept (least recently used first
out): about 6 MiB at 2,000 points each.

Thread safety: a lock guards the entries; callers get copies, so what one
reader does with its arrays cannot reach another.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Points = tuple[Array, Array, Array]
"""Steps, wall times and values of a decimated series."""
MAX_ENTRIES = 128


class DecimatedSeries:
    """Decimations by key (series and read arguments), each valid while its series' newest chunk is the same."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._max = max_entries
        self._entries: OrderedDict[Hashable, tuple[int, Points]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, newest_chunk: int) -> Points | None:
        """Copies of the points kept for ``key`` if they were decimated when its newest chunk was ``newest_chunk``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != newest_chunk:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            points = entry[1]
        return points[0].copy(), points[1].copy(), points[2].copy()

    def put(self, key: Hashable, newest_chunk: int, points: Points) -> None:
        """Keep a copy of ``points``, decimated when the series' newest chunk was ``newest_chunk``.

        Not over a decimation of newer chunks (two readers of one series finishing out of order).
        """
        kept = (points[0].copy(), points[1].copy(), points[2].copy())
        with self._lock:
            known = self._entries.get(key)
            if known is not None and known[0] > newest_chunk:  # a reader that started earlier finished later
                return
            self._entries[key] = (newest_chunk, kept)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
