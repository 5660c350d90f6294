"""Downsampling of long series for plotting: per-bucket min/max and LTTB.

Both functions return sorted indices into the original arrays, so a caller
selects steps, wall times and values together with one fancy index. Neither
crashes on NaN: a NaN point is kept where it would otherwise vanish (min/max
keeps one NaN per bucket that holds any; LTTB may pick a NaN when a bucket
holds nothing else), so a gap in the data stays visible after decimation.

Both are pure functions of their inputs: deterministic, thread-safe, and
they never modify the arrays they are given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
IntArray = np.ndarray[Any, np.dtype[np.intp]]


def minmax_indices(x: Array, y: Array, buckets: int) -> IntArray:
    """Indices that keep the shape of ``y`` over ``x`` in ``buckets`` x-ranges.

    ``x`` is split into ``buckets`` equal-width ranges between its first and
    last value (``x`` is expected ascending, as steps are; if its ends are not
    finite or equal, buckets hold equal counts of points instead). Per
    non-empty bucket the indices of the minimum and maximum of ``y`` are kept,
    plus the first NaN of the bucket if it holds one, plus the first and last
    point overall.

    Args:
        x: Positions, shape (n,), ascending.
        y: Values, shape (n,); may hold NaN and +/-inf.
        buckets: Number of x-ranges, at least 1.

    Returns:
        Sorted unique int indices: at most ``2 * buckets + 2`` of them when
        ``y`` has no NaN, at most ``3 * buckets + 2`` otherwise. When ``n`` is
        within that bound every index is returned.

    Raises:
        ValueError: ``buckets`` below 1, or ``x`` and ``y`` of different shape
            or not one-dimensional.
    """
    x, y = _check_pair(x, y)
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    n = len(y)
    if n <= 2 * buckets + 2:
        return np.arange(n, dtype=np.intp)
    bucket = _bucket_of(x, buckets)
    nan = np.isnan(y)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    all_nan = np.logical_and.reduceat(nan, starts)[_run_ids(bucket)]
    # NaN maps to the neutral element of each reduction; a real value is preferred over it on a tie.
    real = ~nan | all_nan
    low = _first_per_bucket(bucket, _extreme_mask(np.where(nan, np.inf, y), starts, np.minimum, bucket) & real)
    high = _first_per_bucket(bucket, _extreme_mask(np.where(nan, -np.inf, y), starts, np.maximum, bucket) & real)
    first_nan = _first_per_bucket(bucket, nan)
    return np.unique(np.concatenate([[0, n - 1], low, high, first_nan]).astype(np.intp))


def lttb_indices(x: Array, y: Array, n_out: int) -> IntArray:
    """Largest-Triangle-Three-Buckets: ``n_out`` points that keep the shape.

    The first and last points are always kept; the points between are split
    into ``n_out - 2`` buckets of (nearly) equal count and from each bucket
    the point forming the largest triangle with the point kept before it and
    the mean of the next bucket is kept. Points whose triangle area is not a
    number (NaN in x or y) lose to any finite area; a bucket with no finite
    area keeps its first point.

    Args:
        x: Positions, shape (n,), ascending.
        y: Values, shape (n,); may hold NaN and +/-inf.
        n_out: Number of points wanted, at least 3.

    Returns:
        Sorted int indices, exactly ``min(n, n_out)`` of them.

    Raises:
        ValueError: ``n_out`` below 3, or ``x`` and ``y`` of different shape
            or not one-dimensional.
    """
    x, y = _check_pair(x, y)
    if n_out < 3:
        raise ValueError(f"n_out must be at least 3 (first, last and one bucket), got {n_out}")
    n = len(y)
    if n <= n_out:
        return np.arange(n, dtype=np.intp)
    edges = (np.arange(n_out - 1) * ((n - 2) / (n_out - 2))).astype(np.intp) + 1
    edges[-1] = n - 1
    out = np.empty(n_out, dtype=np.intp)
    out[0], out[-1] = 0, n - 1
    for i in range(n_out - 2):
        out[i + 1] = _lttb_pick(x, y, out[i], slice(edges[i], edges[i + 1]), _next_mean(x, y, edges, i))
    return out


def _check_pair(x: Array, y: Array) -> tuple[Array, Array]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be one-dimensional and of equal length, got {x.shape} and {y.shape}")
    return x, y


def _bucket_of(x: Array, buckets: int) -> IntArray:
    n = len(x)
    span = x[-1] - x[0]
    if np.isfinite(span) and span > 0:
        with np.errstate(invalid="ignore"):
            pos = np.floor((x - x[0]) / span * buckets)
        pos = np.where(np.isfinite(pos), pos, 0)
    else:
        pos = np.arange(n) * buckets // n
    # Monotone bucket ids keep buckets contiguous even if x is unsorted or NaN.
    return np.maximum.accumulate(np.clip(pos, 0, buckets - 1).astype(np.intp))


def _run_ids(bucket: IntArray) -> IntArray:
    """For each point, the ordinal of its (contiguous) bucket among non-empty ones."""
    return np.cumsum(np.r_[0, bucket[1:] != bucket[:-1]]).astype(np.intp)


def _extreme_mask(key: Array, starts: IntArray, ufunc: np.ufunc, bucket: IntArray) -> Array:
    extreme: Array = ufunc.reduceat(key, starts)[_run_ids(bucket)]
    return np.equal(key, extreme)


def _first_per_bucket(bucket: IntArray, mask: Array) -> IntArray:
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return idx
    b = bucket[idx]
    return idx[np.r_[True, b[1:] != b[:-1]]]


def _next_mean(x: Array, y: Array, edges: IntArray, i: int) -> tuple[float, float]:
    if i + 2 >= len(edges):
        return float(x[-1]), float(y[-1])
    lo, hi = edges[i + 1], edges[i + 2]
    xs, ys = x[lo:hi], y[lo:hi]
    finite = np.isfinite(xs) & np.isfinite(ys)
    if not finite.any():
        return float("nan"), float("nan")
    return float(xs[finite].mean()), float(ys[finite].mean())


def _lttb_pick(x: Array, y: Array, a: int, bucket: slice, c: tuple[float, float]) -> int:
    ax, ay = x[a], y[a]
    with np.errstate(invalid="ignore", over="ignore"):
        area = np.abs((ax - c[0]) * (y[bucket] - ay) - (ax - x[bucket]) * (c[1] - ay))
    area = np.where(np.isnan(area), -1.0, area)
    return int(bucket.start + np.argmax(area))
