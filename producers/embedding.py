"""A 2-D embedding of a batch of activations by principal component analysis.

Pure numpy (one thin SVD), deterministic: each component's sign is fixed so
that its largest-magnitude loading is positive, so consecutive embeddings of
the same monitor sample do not flip from step to step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def pca_2d(activations: Array) -> Array:
    """Project samples onto their first two principal components.

    Args:
        activations: an array of shape (n, ...); everything after the first
            axis is flattened into features.

    Returns:
        A float64 array of shape (n, 2). Columns that have no variance to
        explain (one sample, or a single feature) are zeros. Non-finite
        inputs are treated as 0 so that one bad activation does not blank the
        plot.

    Raises:
        ValueError: ``activations`` has no sample axis (a 0-d array).
    """
    if activations.ndim == 0:
        raise ValueError("pca_2d needs an (n, ...) array of samples, got a scalar")
    n = activations.shape[0]
    x = np.nan_to_num(activations.reshape(n, -1).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    out = np.zeros((n, 2), dtype=np.float64)
    if n < 2 or x.shape[1] == 0:
        return out
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    out[:, : len(components)] = x @ components.T
    return out
