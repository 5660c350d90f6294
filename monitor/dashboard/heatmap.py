"""A tensor's histograms over steps as one step x bin image, patched a column at a time.

The image is a fixed ``bins`` x ``capacity`` grid: each histogram is
resampled onto common value bins and fills the next free column; columns not
yet filled are NaN, which the colour mapper leaves transparent (and leaves
out of its colour scale). A live histogram that fits the grid is sent as a
``patch`` of that one column (``bins`` values) plus the image's x extent,
instead of the whole image again: about 0.5 KB a flush instead of 60 KB.

The whole image is drawn again only when it must be: when a histogram falls
outside the grid's value range (which is then padded by ``PAD`` of its span
on each side, so a slow drift does not redraw every time), and when all
columns are full (it then keeps the newest ``keep`` histograms and has
``capacity - keep`` columns free again).

Columns are spaced evenly: a histogram's column is placed by its order, and
the x extent is set so the first and last columns sit on their steps. A
step lower than the one before (a run restarted from a checkpoint) starts
the image again from there. A histogram with a non-finite edge or count
is left out: it would make the whole grid NaN.

Thread safety: used only on the server's event loop, like the panels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from bokeh.models import ColumnDataSource

from monitor.dashboard.percentiles import resample_counts
from monitor.wire import Histogram

PAD = 0.05
"""Fraction of the value span added on each side when the grid is (re)made."""


class StepHeatmap:
    """The step x bin image in one ``ColumnDataSource`` (columns image, x, y, dw, dh)."""

    def __init__(self, source: ColumnDataSource, bins: int, keep: int, capacity: int) -> None:
        if not 0 < keep <= capacity:
            raise ValueError(f"need 0 < keep <= capacity, got keep={keep}, capacity={capacity}")
        self.source, self._bins, self._keep, self._capacity = source, bins, keep, capacity
        self._grid = np.linspace(0.0, 1.0, bins + 1)
        self._steps: list[int] = []
        self.redraws = 0
        self.patches = 0
        source.data = _image(np.full((1, 1), np.nan, dtype=np.float32), 0.0, 1.0, 0.0, 1.0)

    def draw(self, histograms: Sequence[Histogram]) -> None:
        """Draw the newest ``keep`` of these histograms (oldest first) as a new image."""
        shown = [h for h in list(histograms)[-self._keep :] if _finite(h)]
        restarts = [i for i in range(1, len(shown)) if shown[i].step < shown[i - 1].step]
        shown = shown[restarts[-1] :] if restarts else shown  # since the last restart from a checkpoint
        self._steps = [h.step for h in shown]
        self.redraws += 1
        if not shown:
            self.source.data = _image(np.full((1, 1), np.nan, dtype=np.float32), 0.0, 1.0, 0.0, 1.0)
            return
        low = min(float(h.edges[0]) for h in shown)
        high = max(float(h.edges[-1]) for h in shown)
        span = high - low if high > low else 1.0
        self._grid = np.linspace(low - PAD * span, high + PAD * span, self._bins + 1)
        image = np.full((self._bins, self._capacity), np.nan, dtype=np.float32)
        for column, histogram in enumerate(shown):
            image[:, column] = resample_counts(histogram.edges, histogram.counts, self._grid)
        x, dw = self._extent()
        self.source.data = _image(image, x, dw, float(self._grid[0]), float(self._grid[-1] - self._grid[0]))

    def add(self, histogram: Histogram, kept: Sequence[Histogram]) -> None:
        """Show one more histogram: patch its column, or draw ``kept`` (which ends with it) again."""
        if not _finite(histogram):
            return
        fits = float(histogram.edges[0]) >= self._grid[0] and float(histogram.edges[-1]) <= self._grid[-1]
        later = bool(self._steps) and histogram.step >= self._steps[-1]
        if not later or not fits or len(self._steps) >= self._capacity:
            self.draw(kept)
            return
        column = len(self._steps)
        self._steps.append(histogram.step)
        values = resample_counts(histogram.edges, histogram.counts, self._grid).astype(np.float32)
        x, dw = self._extent()
        self.patches += 1
        self.source.patch({"image": [((0, slice(None), column), values)], "x": [(0, x)], "dw": [(0, dw)]})

    def _extent(self) -> tuple[float, float]:
        """The image's x and dw: columns evenly spaced, the first and last on their steps."""
        first, last, n = self._steps[0], self._steps[-1], len(self._steps)
        width = (last - first) / (n - 1) if n > 1 and last > first else 1.0
        return first - width / 2, width * self._capacity


def _finite(histogram: Histogram) -> bool:
    return bool(np.isfinite(histogram.edges).all() and np.isfinite(histogram.counts).all())


def _image(image: np.ndarray, x: float, dw: float, y: float, dh: float) -> dict[str, list[object]]:
    return {"image": [image], "x": [x], "y": [y], "dw": [dw], "dh": [dh]}
