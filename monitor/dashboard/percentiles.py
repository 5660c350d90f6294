"""Distributions over time from histograms: percentile bands and heatmap rows.

Counts are taken as spread uniformly within each bin, as TensorBoard's
distributions view does. Pure numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

BAND_QUANTILES = (0.0, 0.07, 0.16, 0.5, 0.84, 0.93, 1.0)
"""min, 7th, 16th, 50th, 84th, 93rd percentile, max."""
BAND_COLUMNS = ("p0", "p7", "p16", "p50", "p84", "p93", "p100")


def histogram_percentiles(edges: Array, counts: Array, quantiles: tuple[float, ...] = BAND_QUANTILES) -> Array:
    """Values below which the given fractions of a histogram's mass lie.

    Args:
        edges: Bin edges, ascending, one more than ``counts``.
        counts: Non-negative bin counts.
        quantiles: Fractions in [0, 1].

    Returns:
        float64 values, one per quantile; all NaN for an empty histogram.
    """
    edges = np.asarray(edges, dtype=np.float64)
    cdf = np.concatenate(([0.0], np.cumsum(np.clip(np.asarray(counts, dtype=np.float64), 0, None))))
    total = cdf[-1]
    if total <= 0:
        return np.full(len(quantiles), np.nan)
    targets = np.asarray(quantiles, dtype=np.float64) * total
    # side="right" skips leading empty bins for q=0; trailing ones get span 0.
    upper = np.clip(np.searchsorted(cdf, targets, side="right"), 1, len(cdf) - 1)
    lower = upper - 1
    span = cdf[upper] - cdf[lower]
    fraction = np.divide(targets - cdf[lower], span, out=np.zeros_like(targets), where=span > 0)
    return np.asarray(edges[lower] + fraction * (edges[upper] - edges[lower]), dtype=np.float64)


def resample_counts(edges: Array, counts: Array, grid: Array) -> Array:
    """Redistribute a histogram onto other bin edges (for a step x bin heatmap).

    Args:
        edges: The histogram's edges, ascending.
        counts: Its counts.
        grid: Target edges, ascending.

    Returns:
        float64 counts per target bin (``len(grid) - 1``); mass outside the
        grid is dropped.
    """
    cdf = np.concatenate(([0.0], np.cumsum(np.asarray(counts, dtype=np.float64))))
    at_grid = np.interp(np.asarray(grid, dtype=np.float64), np.asarray(edges, dtype=np.float64), cdf)
    return np.asarray(np.diff(at_grid), dtype=np.float64)
