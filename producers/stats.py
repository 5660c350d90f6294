"""The numeric content of frames: scalar batches and summaries, computed with numpy.

Everything here runs on the producer's background thread, never on the
training thread. Functions are pure: they take arrays the caller already
copied and return new arrays. Non-finite values are counted and excluded from
bins and moments, and inputs with no finite value at all (all NaN, empty)
yield zero counts and zero moments instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from monitor.wire import DataSummary, Histogram, Scalars

Array = np.ndarray[Any, Any]

MAX_SAMPLE_ELEMENTS = 1_000_000
"""Most values in a data summary's sample (4 MB as float32)."""

MAX_POINTS_PER_FRAME = 10_000
"""Most scalar points merged into one ``Scalars`` frame."""


@dataclass(frozen=True)
class ScalarItem:
    """Metrics of one ``Monitor.log`` call; the sender merges items into ``Scalars`` frames."""

    step: int
    wall: float
    names: tuple[str, ...]
    values: tuple[float, ...]


def scalars_message(run: str, seq: int, items: list[ScalarItem]) -> Scalars:
    """Merge logged metrics into one long-form ``Scalars`` message.

    Consecutive calls usually log the same names, so each distinct tuple of
    names is mapped to series indices once and the rest is array work.
    """
    names: dict[str, int] = {}
    layouts: dict[tuple[str, ...], tuple[int, ...]] = {}
    for item in items:
        if item.names not in layouts:
            layouts[item.names] = tuple(names.setdefault(name, len(names)) for name in item.names)
    sizes = np.fromiter((len(item.names) for item in items), np.int64, len(items))
    total = int(sizes.sum())
    return Scalars(
        run,
        seq,
        tuple(names),
        np.repeat(np.fromiter((item.step for item in items), np.int64, len(items)), sizes),
        np.repeat(np.fromiter((item.wall for item in items), np.float64, len(items)), sizes),
        np.fromiter(chain.from_iterable(layouts[item.names] for item in items), np.int64, total),
        np.fromiter(chain.from_iterable(item.values for item in items), np.float64, total),
    )


def chunk_scalars(items: list[ScalarItem], limit: int = MAX_POINTS_PER_FRAME) -> list[list[ScalarItem]]:
    """Split items, keeping each one whole, into chunks of at most ``limit`` points."""
    chunks: list[list[ScalarItem]] = []
    points = limit
    for item in items:
        if points + len(item.names) > limit:
            chunks.append([])
            points = 0
        chunks[-1].append(item)
        points += len(item.names)
    return chunks


@dataclass(frozen=True, eq=False)
class Summary:
    """Bin edges and counts of one tensor plus its moments over finite values.

    Invariant: ``len(edges) == len(counts) + 1``; ``count`` is the number of
    finite values, ``nonfinite`` the number of NaN or infinite ones; with no
    finite value, ``min``, ``max``, ``mean`` and ``std`` are 0.0.
    """

    edges: Array
    counts: Array
    min: float
    max: float
    mean: float
    std: float
    count: int
    nonfinite: int


SUMMARY_CHUNK = 1 << 20
"""Values cast to float64 and binned at a time by ``summarize``."""


def summarize(values: Array, bins: int, chunk: int = SUMMARY_CHUNK) -> Summary:
    """Histogram and moments of every element of ``values``.

    The values are read ``chunk`` at a time, in two passes (range and
    moments, then counts): memory stays within a chunk's float64 copy of the
    input, and the training thread gets the interpreter between chunks. Cast
    whole, 50M float32 values took 1.35 GB and held the GIL for 120-180 ms
    at a time.

    Args:
        values: Any numeric array; it is flattened.
        bins: Number of equal-width bins over the finite range, at least 1.
        chunk: Values per chunk, at least 1.

    Returns:
        The summary; never raises for NaN, infinite or empty input.
    """
    flat = np.asarray(values).ravel()
    parts = [flat[start : start + chunk] for start in range(0, flat.size, chunk)]
    kept = [_finite(parts[0])] if len(parts) == 1 else None  # one chunk (most tensors): cast once, not twice
    low, high, count, mean, squares = math.inf, -math.inf, 0, 0.0, 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for finite in kept or (_finite(part) for part in parts):
            if finite.size == 0:
                continue
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
            part_mean = float(finite.mean())
            part_squares = float(np.square(finite - part_mean).sum())
            if count == 0:  # the first chunk with finite values (0 * an overflowing delta**2 would be NaN)
                count, mean, squares = finite.size, part_mean, part_squares
                continue
            total = count + finite.size  # Chan et al.'s pairwise update of the mean and squared deviations
            delta = part_mean - mean
            mean += delta * finite.size / total
            squares += part_squares + delta * delta * (count * finite.size / total)
            count = total
    nonfinite = int(flat.size - count)
    if count == 0:
        return Summary(np.linspace(0.0, 1.0, bins + 1), np.zeros(bins), 0.0, 0.0, 0.0, 0.0, 0, nonfinite)
    edges, count_into = _binning(low, high, bins)
    counts = np.zeros(bins)
    for finite in kept or (_finite(part) for part in parts):
        counts += count_into(finite)
    return Summary(edges.astype(np.float64), counts, low, high, mean, math.sqrt(squares / count), count, nonfinite)


def _finite(part: Array) -> Array:
    cast = part.astype(np.float64)
    return cast[np.isfinite(cast)]


def _binning(low: float, high: float, bins: int) -> tuple[Array, Callable[[Array], Array]]:
    """Equal-width edges over [low, high] and a function counting finite values into them.

    Even bins take numpy's fast path, which an array of edges does not; a
    range that itself overflows float64 gets edges built at half scale.
    """
    if np.isfinite(high - low):
        try:
            edges = np.histogram_bin_edges(np.array([low, high]), bins=bins, range=(low, high))
            return edges, lambda values: np.histogram(values, bins=bins, range=(low, high))[0]
        except ValueError:  # "too many bins for data range": a range a few ulps wide, or a constant past 2**52
            edges = _widened(low, high, bins)
    else:
        edges = np.linspace(low * 0.5, high * 0.5, bins + 1) * 2.0
    return edges, lambda values: np.histogram(values, bins=edges)[0]


def _widened(low: float, high: float, bins: int) -> Array:
    """Equal-width edges centred on [low, high], wide enough that every edge is a distinct float.

    numpy cannot split a range a few ulps wide into ``bins`` (nor widen a
    constant past 2**52 by its usual 0.5); the frame was dropped before.
    """
    centre = low / 2 + high / 2
    half = max((high - low) / 2, abs(centre) * 2.0**-40)
    return np.linspace(centre - half, centre + half, bins + 1)


def from_counts(edges: Array, counts: Array) -> Summary:
    """A summary of a histogram the caller binned already.

    Moments are estimated from bin centres weighted by counts; ``min`` and
    ``max`` are the outer edges.

    Args:
        edges: Increasing finite bin edges, one more than ``counts``.
        counts: Non-negative counts per bin.

    Returns:
        The summary with the given edges and counts as float64.
    """
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    total = float(counts.sum())
    if total <= 0:
        return Summary(edges, counts, float(edges[0]), float(edges[-1]), 0.0, 0.0, 0, 0)
    centres = (edges[:-1] + edges[1:]) / 2
    mean = float(np.dot(centres, counts) / total)
    std = float(np.sqrt(np.dot((centres - mean) ** 2, counts) / total))
    return Summary(edges, counts, float(edges[0]), float(edges[-1]), mean, std, round(total), 0)


def bin_finite(finite: Array, bins: int) -> tuple[Array, Array]:
    """Equal-width bins over the range of ``finite`` (all values must be finite).

    Returns:
        ``(edges, counts)`` as float64; edges span [0, 1] when ``finite`` is
        empty, and [v - 0.5, v + 0.5] when every value equals v.
    """
    if finite.size == 0:
        return np.linspace(0.0, 1.0, bins + 1), np.zeros(bins)
    edges, count_into = _binning(float(finite.min()), float(finite.max()), bins)
    return edges.astype(np.float64), count_into(finite).astype(np.float64)


def histogram_message(run: str, seq: int, summary: Summary, *, name: str, step: int, wall: float) -> Histogram:
    """Wrap a summary as the wire's ``Histogram`` message."""
    return Histogram(
        run,
        seq,
        name,
        step,
        wall,
        summary.edges,
        summary.counts,
        summary.min,
        summary.max,
        summary.mean,
        summary.std,
        summary.count,
        summary.nonfinite,
    )


@dataclass(frozen=True, eq=False)
class DataInput:
    """A data set as the caller handed it over (already copied and validated).

    ``features`` is (n, d); ``labels`` holds class indices (n,) or is None.
    """

    name: str
    step: int
    wall: float
    features: Array
    feature_names: tuple[str, ...]
    labels: Array | None
    label_names: tuple[str, ...]
    bins: int
    sample_size: int


def data_summary_message(run: str, seq: int, data: DataInput) -> DataSummary:
    """Per-feature histograms, label counts and a random row sample of a data set.

    The sample keeps at most ``data.sample_size`` rows and at most
    ``MAX_SAMPLE_ELEMENTS`` values; rows are drawn with a fixed seed so a
    resent summary is identical.
    """
    edges, counts = feature_histograms(data.features, data.bins)
    label_counts = None
    if data.labels is not None:
        label_counts = np.bincount(data.labels, minlength=len(data.label_names)).astype(np.int64)
    rows = sample_rows(len(data.features), data.features.shape[1], data.sample_size)
    sample = data.features[rows].astype(np.float32) if len(rows) else None
    sample_labels = data.labels[rows] if data.labels is not None and sample is not None else None
    return DataSummary(
        run,
        seq,
        data.name,
        data.step,
        data.wall,
        data.feature_names,
        edges,
        counts,
        data.label_names,
        label_counts,
        data.feature_names if sample is not None else (),
        sample,
        sample_labels,
    )


def feature_histograms(features: Array, bins: int) -> tuple[Array, Array]:
    """Bins of each column of a (n, d) array over its own finite range.

    Returns:
        ``(edges, counts)`` of shapes (d, bins + 1) and (d, bins).
    """
    columns = np.asarray(features, dtype=np.float64)
    edges = np.empty((columns.shape[1], bins + 1))
    counts = np.empty((columns.shape[1], bins))
    for j in range(columns.shape[1]):
        column = columns[:, j]
        edges[j], counts[j] = bin_finite(column[np.isfinite(column)], bins)
    return edges, counts


def sample_rows(n: int, width: int, size: int) -> Array:
    """Sorted indices of a reproducible random sample of rows.

    Args:
        n: Number of rows available.
        width: Values per row; caps the sample at ``MAX_SAMPLE_ELEMENTS``.
        size: Rows wanted.
    """
    keep = min(n, size, MAX_SAMPLE_ELEMENTS // max(width, 1))
    if keep >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=keep, replace=False))
