"""Unit tests of monitor.decimate: min/max buckets and LTTB."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.decimate import lttb_indices, minmax_indices


def _wave(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=np.float64)
    return x, np.sin(x / 50.0) + rng.normal(0, 0.3, n)


def _check_indices(idx: np.ndarray, n: int) -> None:
    assert idx.dtype == np.intp
    assert np.all(np.diff(idx) > 0), "indices must be sorted and unique"
    assert idx[0] == 0 and idx[-1] == n - 1


@pytest.mark.parametrize("buckets", [1, 2, 7, 100, 499])
def test_minmax_output_is_bounded_and_keeps_ends(buckets: int) -> None:
    x, y = _wave(10_000)
    idx = minmax_indices(x, y, buckets)
    _check_indices(idx, len(x))
    assert len(idx) <= 2 * buckets + 2


def test_minmax_keeps_min_and_max_of_every_bucket() -> None:
    # x spans 0..1000 so each of 10 buckets is 100 wide; x == 1000 joins the last bucket.
    x, y = _wave(1001, seed=3)
    idx = set(minmax_indices(x, y, 10).tolist())
    for b in range(10):
        lo, hi = b * 100, (b + 1) * 100 + (1 if b == 9 else 0)
        assert lo + int(np.argmin(y[lo:hi])) in idx
        assert lo + int(np.argmax(y[lo:hi])) in idx


def test_minmax_returns_everything_when_short() -> None:
    x, y = _wave(9)
    assert minmax_indices(x, y, 4).tolist() == list(range(9))
    assert minmax_indices(np.empty(0), np.empty(0), 3).tolist() == []


def test_minmax_buckets_by_x_not_by_count() -> None:
    x = np.r_[np.arange(100.0), 1000.0]
    y = np.r_[np.zeros(50), 5.0, np.zeros(49), 1.0]
    idx = minmax_indices(x, y, 10).tolist()
    # All of 0..99 falls into the first x-bucket: only its min, max and the ends survive.
    assert idx == [0, 50, 100]


def test_minmax_keeps_infinities_as_extremes() -> None:
    x, y = _wave(1000)
    y[123], y[700] = -np.inf, np.inf
    idx = minmax_indices(x, y, 5)
    assert {123, 700} <= set(idx.tolist())


def test_minmax_survives_nan_and_keeps_one_per_bucket() -> None:
    x, y = _wave(1000)
    y[[10, 11, 12, 640]] = np.nan
    idx = minmax_indices(x, y, 10)
    _check_indices(idx, 1000)
    assert len(idx) <= 3 * 10 + 2
    assert {10, 640} <= set(idx.tolist())
    kept = y[idx]
    assert np.isfinite(kept).sum() >= 20, "each bucket still keeps a real min and max"


def test_minmax_all_nan_and_nan_x_do_not_crash() -> None:
    x = np.arange(500.0)
    assert len(minmax_indices(x, np.full(500, np.nan), 10)) <= 32
    x[[0, 499]] = np.nan
    _check_indices(minmax_indices(x, _wave(500)[1], 10), 500)


def test_minmax_rejects_bad_arguments() -> None:
    x, y = _wave(10)
    with pytest.raises(ValueError, match="buckets"):
        minmax_indices(x, y, 0)
    with pytest.raises(ValueError, match="equal length"):
        minmax_indices(x, y[:5], 2)


def test_lttb_picks_the_known_peaks() -> None:
    x = np.arange(7.0)
    y = np.array([0.0, 0.0, 10.0, 0.0, 0.0, -10.0, 0.0])
    assert lttb_indices(x, y, 4).tolist() == [0, 2, 5, 6]


@pytest.mark.parametrize("n_out", [3, 10, 257, 1000])
def test_lttb_returns_exactly_n_out_with_ends(n_out: int) -> None:
    x, y = _wave(5000)
    idx = lttb_indices(x, y, n_out)
    _check_indices(idx, 5000)
    assert len(idx) == n_out


def test_lttb_returns_everything_when_short() -> None:
    x, y = _wave(20)
    assert lttb_indices(x, y, 50).tolist() == list(range(20))


def test_lttb_survives_nan() -> None:
    x, y = _wave(2000)
    y[100:400] = np.nan
    y[1500] = np.nan
    idx = lttb_indices(x, y, 100)
    _check_indices(idx, 2000)
    assert len(idx) == 100
    assert np.isnan(y[idx]).any(), "a bucket of only NaN keeps a NaN point"
    assert len(lttb_indices(x, np.full(2000, np.nan), 50)) == 50


def test_lttb_rejects_bad_arguments() -> None:
    x, y = _wave(10)
    with pytest.raises(ValueError, match="n_out"):
        lttb_indices(x, y, 2)
    with pytest.raises(ValueError, match="one-dimensional"):
        lttb_indices(x.reshape(2, 5), y.reshape(2, 5), 4)
