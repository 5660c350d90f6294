"""Unit tests of the producer's numeric summaries and scalar batching."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.wire import DataSummary, Histogram, Scalars, decode, encode
from producers.stats import (
    MAX_SAMPLE_ELEMENTS,
    DataInput,
    ScalarItem,
    chunk_scalars,
    data_summary_message,
    from_counts,
    histogram_message,
    sample_rows,
    scalars_message,
    summarize,
)


def test_summary_bins_and_moments_match_numpy() -> None:
    values = np.random.default_rng(0).normal(size=(40, 25)).astype(np.float32)
    summary = summarize(values, 64)
    counts, edges = np.histogram(values.astype(np.float64), bins=64)
    np.testing.assert_array_equal(summary.counts, counts)
    np.testing.assert_allclose(summary.edges, edges)
    flat = values.astype(np.float64).ravel()
    assert summary.count == 1000 and summary.nonfinite == 0
    assert summary.min == flat.min() and summary.max == flat.max()
    assert summary.mean == pytest.approx(flat.mean()) and summary.std == pytest.approx(flat.std())


def test_a_tensor_summarised_in_chunks_matches_numpy_over_the_whole() -> None:
    rng = np.random.default_rng(1)
    values = (rng.normal(size=10_007) * 3 + 1).astype(np.float32)
    values[[5, 4_000, 9_999]] = [np.nan, np.inf, -np.inf]
    summary = summarize(values, 32, chunk=1_000)  # eleven chunks, the last short
    finite = values[np.isfinite(values)].astype(np.float64)
    counts, edges = np.histogram(finite, bins=32)
    np.testing.assert_array_equal(summary.counts, counts)
    np.testing.assert_allclose(summary.edges, edges)
    assert (summary.count, summary.nonfinite) == (10_004, 3)
    assert (summary.min, summary.max) == (finite.min(), finite.max())
    assert summary.mean == pytest.approx(finite.mean(), rel=1e-12) and summary.std == pytest.approx(finite.std())
    assert summarize(np.full(2_500, 7.0), 3, chunk=1_000).counts.tolist() == [0, 2_500, 0]  # constant
    huge = np.random.default_rng(2).normal(1e160, 1e150, 3_000)  # the first chunk's squared mean overflows
    assert summarize(huge, 8, chunk=1_000).std == pytest.approx(huge.std(), rel=1e-6)


def test_non_finite_values_are_counted_and_excluded() -> None:
    values = np.array([1.0, 2.0, np.nan, np.inf, -np.inf, 3.0])
    summary = summarize(values, 4)
    assert summary.nonfinite == 3 and summary.count == 3
    assert summary.counts.sum() == 3
    assert (summary.min, summary.max, summary.mean) == (1.0, 3.0, 2.0)
    assert np.all(np.isfinite(summary.edges))


@pytest.mark.parametrize("values", [np.full(10, np.nan), np.array([]), np.array([np.inf, -np.inf])])
def test_no_finite_value_gives_empty_bins_not_an_error(values: np.ndarray) -> None:
    summary = summarize(values, 8)
    assert summary.count == 0 and summary.nonfinite == values.size
    assert summary.counts.shape == (8,) and summary.counts.sum() == 0
    assert (summary.min, summary.max, summary.mean, summary.std) == (0.0, 0.0, 0.0, 0.0)


def test_constant_and_huge_ranges_stay_finite() -> None:
    constant = summarize(np.full(5, 7.0), 3)
    assert constant.counts.sum() == 5 and constant.edges[0] < 7.0 < constant.edges[-1]
    huge = summarize(np.array([-1.7e308, 0.0, 1.7e308]), 4)
    assert huge.counts.sum() == 3 and np.all(np.isfinite(huge.edges))


def test_integer_and_bool_inputs_are_summarised() -> None:
    assert summarize(np.arange(10, dtype=np.int8), 5).counts.tolist() == [2, 2, 2, 2, 2]
    assert summarize(np.array([True, False, True]), 2).counts.tolist() == [1, 2]


def test_edges_and_counts_pass_through_with_estimated_moments() -> None:
    summary = from_counts(np.array([0.0, 1.0, 2.0, 4.0]), np.array([1, 0, 3]))
    np.testing.assert_array_equal(summary.edges, [0.0, 1.0, 2.0, 4.0])
    np.testing.assert_array_equal(summary.counts, [1.0, 0.0, 3.0])
    assert summary.count == 4 and (summary.min, summary.max) == (0.0, 4.0)
    assert summary.mean == pytest.approx((0.5 + 3 * 3.0) / 4)
    assert from_counts(np.array([0.0, 1.0]), np.array([0])).count == 0


def test_histogram_message_round_trips_through_the_wire() -> None:
    message = histogram_message("r1", 3, summarize(np.arange(100.0), 10), name="w", step=7, wall=1.5)
    decoded = decode(encode(message))
    assert isinstance(decoded, Histogram)
    assert decoded.count == 100 and decoded.step == 7 and decoded.counts.sum() == 100


def test_scalars_merge_in_long_form_and_chunk_by_whole_items() -> None:
    items = [ScalarItem(s, 10.0 + s, ("loss", "acc"), (1.0 / (s + 1), float(s))) for s in range(3)]
    message = scalars_message("r1", 1, items)
    decoded = decode(encode(message))
    assert isinstance(decoded, Scalars)
    assert decoded.names == ("loss", "acc")
    assert decoded.steps.tolist() == [0, 0, 1, 1, 2, 2]
    assert decoded.index.tolist() == [0, 1, 0, 1, 0, 1]
    chunks = chunk_scalars([ScalarItem(0, 0.0, ("a",) * 3, (1.0,) * 3)] * 7, limit=10)
    assert [sum(len(i.names) for i in c) for c in chunks] == [9, 9, 3]
    assert chunk_scalars([]) == []


def test_data_summary_has_per_feature_bins_label_counts_and_a_bounded_sample() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 3))
    features[0, 2] = np.nan
    data = DataInput("train", 0, 1.0, features, ("a", "b", "c"), rng.integers(0, 4, 300), ("0", "1", "2", "3"), 16, 50)
    decoded = decode(encode(data_summary_message("r1", 1, data)))
    assert isinstance(decoded, DataSummary)
    assert decoded.edges.shape == (3, 17) and decoded.counts.shape == (3, 16)
    assert decoded.counts[:2].sum(axis=1).tolist() == [300, 300] and decoded.counts[2].sum() == 299
    assert decoded.label_counts is not None and decoded.label_counts.sum() == 300
    assert decoded.sample is not None and decoded.sample.shape == (50, 3)
    assert decoded.sample_labels is not None and len(decoded.sample_labels) == 50


def test_sample_rows_is_reproducible_and_capped() -> None:
    np.testing.assert_array_equal(sample_rows(1000, 2, 10), sample_rows(1000, 2, 10))
    assert len(sample_rows(5, 2, 10)) == 5
    assert len(sample_rows(10**6, 1000, 10**6)) == MAX_SAMPLE_ELEMENTS // 1000


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.0, np.nextafter(1.0, 2.0)]),  # a range two ulps wide: numpy cannot make 64 bins of it
        np.full(5, 1.7e18),  # a constant past 2**52 (nanosecond timestamps): v +- 0.5 is v
        np.array([1.7e18, 1.7e18 + 512]),
        np.array([-1e-300, 1e-300]),
    ],
)
def test_ranges_numpy_cannot_split_are_still_summarised_and_sent(values: np.ndarray) -> None:
    """These raised "too many bins for data range" and the frame, or a whole data summary, was dropped."""
    summary = summarize(values, 64)
    assert summary.counts.sum() == len(values) and np.all(np.diff(summary.edges) > 0)
    assert summary.edges[0] <= values.min() and values.max() <= summary.edges[-1]
    message = histogram_message("r", 1, summary, name="w", step=0, wall=1.0)
    assert isinstance(decode(encode(message)), Histogram)  # the server's bin check takes it
    features = np.stack([values, np.arange(len(values), dtype=np.float64)], axis=1)
    data = DataInput("train", 0, 1.0, features, ("odd", "index"), None, (), 64, 0)
    decoded = decode(encode(data_summary_message("r", 2, data)))
    assert isinstance(decoded, DataSummary) and decoded.counts.sum(axis=1).tolist() == [len(values)] * 2
