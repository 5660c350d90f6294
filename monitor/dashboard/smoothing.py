"""Exponential moving average of a curve, as TensorBoard's smoothing slider.

The average is debiased (it does not start from zero) and skips non-finite
values, whose smoothed value is NaN so the line shows a gap. It continues
from an ``EmaState`` so a live line is smoothed incrementally. A smoothed
value within ``SNAP_RTOL`` of its raw value is the raw value: a constant
series (a fixed learning rate) stays exactly constant instead of carrying
rounding noise that an auto-ranged axis would zoom into. Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
SNAP_RTOL = 1e-12


@dataclass(frozen=True)
class EmaState:
    """Where an average left off: the biased accumulator and how many values fed it."""

    last: float = 0.0
    count: int = 0


def ema(values: Array, weight: float, state: EmaState | None = None) -> tuple[Array, EmaState]:
    """Smooth ``values``, continuing from ``state``.

    Args:
        values: The raw values, oldest first.
        weight: 0 (no smoothing) up to, excluding, 1.
        state: Where the previous chunk of the same line left off.

    Returns:
        The float64 smoothed values (NaN where the input was not finite) and
        the state to continue from.

    Raises:
        ValueError: ``weight`` outside [0, 1).
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    raw = np.asarray(values, dtype=np.float64)
    out = np.full(raw.shape, np.nan)
    last, count = (state.last, state.count) if state is not None else (0.0, 0)
    for i, value in enumerate(raw.tolist()):
        if math.isfinite(value):
            last = last * weight + (1.0 - weight) * value
            count += 1
            out[i] = last / (1.0 - weight**count) if weight > 0 else value
    snap = np.isclose(out, raw, rtol=SNAP_RTOL, atol=0.0)
    out[snap] = raw[snap]
    return out, EmaState(last, count)
