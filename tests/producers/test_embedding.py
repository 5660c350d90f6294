"""Unit tests of the PCA embedding."""

from __future__ import annotations

import numpy as np
import pytest

from producers.embedding import pca_2d


def test_recovers_the_dominant_directions() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(200, 2)) * np.array([10.0, 3.0])
    basis = np.linalg.qr(rng.normal(size=(8, 8)))[0][:2]
    embedded = pca_2d(latent @ basis + rng.normal(scale=0.01, size=(200, 8)))
    assert embedded.shape == (200, 2)
    correlation = np.abs(np.corrcoef(embedded.T, latent.T)[:2, 2:])
    assert correlation[0, 0] > 0.99 and correlation[1, 1] > 0.99


def test_is_deterministic_in_sign_and_flattens_extra_axes() -> None:
    x = np.random.default_rng(1).normal(size=(50, 4, 4, 3)).astype(np.float32)
    first, second = pca_2d(x), pca_2d(x.copy())
    np.testing.assert_allclose(first, second)
    np.testing.assert_allclose(pca_2d(-x), -first, atol=1e-9)


@pytest.mark.parametrize("shape", [(1, 5), (7, 1), (3, 0)])
def test_degenerate_inputs_give_zeros_where_undefined(shape: tuple[int, int]) -> None:
    out = pca_2d(np.ones(shape))
    assert out.shape == (shape[0], 2)
    assert np.all(np.isfinite(out))


def test_non_finite_values_do_not_poison_the_plot() -> None:
    x = np.random.default_rng(2).normal(size=(20, 3))
    x[3, 1] = np.nan
    x[5, 0] = np.inf
    assert np.all(np.isfinite(pca_2d(x)))


def test_scalar_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an"):
        pca_2d(np.float64(1.0).reshape(()))
