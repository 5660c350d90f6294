"""The data a ``MonitorCallback`` is handed: the monitor sample and the data summary.

Copies and checks the user's arrays once, at construction, so that a bad
argument fails before training starts; works out whether predictions are a
classification or a regression; and sends data summaries (per-feature
histograms for tabular inputs, pixel intensities for images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Array = np.ndarray[Any, Any]
Inputs = Array | list[Array] | dict[str, Array]
MAX_MONITOR_SAMPLES = 1000
MAX_PIXELS = 50_000


class DataSink(Protocol):
    """The part of ``producers.Monitor`` that takes data summaries."""

    def data_summary(
        self,
        features: Any,
        labels: Any = None,
        *,
        feature_names: Sequence[str] | None = None,
        label_names: Sequence[str] | None = None,
        name: str = "train",
        bins: int = 32,
        sample_size: int = 500,
    ) -> None: ...


@dataclass(frozen=True, eq=False)
class MonitorSample:
    """A fixed set of inputs and targets, copied; ``y`` holds class indices for a classification."""

    x: Inputs
    y: Array
    task: str

    @property
    def size(self) -> int:
        return len(self.y)


def copy_inputs(x: Any, what: str) -> Inputs:
    """Copy model inputs: one array, a list of arrays (several inputs) or a dict by input name.

    Raises:
        TypeError: ``x`` is none of those, or holds non-numeric data.
    """
    if isinstance(x, Mapping):
        return {str(k): _numeric(v, f"{what}[{k!r}]") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_numeric(v, f"{what}[{i}]") for i, v in enumerate(x)]
    return _numeric(x, what)


def _numeric(value: Any, what: str) -> Array:
    array = np.array(value, copy=True)
    if array.dtype.kind not in "biuf" or array.ndim == 0:
        raise TypeError(f"{what} must be a numeric array with a sample axis, got dtype {array.dtype} ndim {array.ndim}")
    return array


def rows(x: Inputs) -> int:
    """Number of samples in model inputs (of the first input when there are several)."""
    first = next(iter(x.values())) if isinstance(x, dict) else x[0] if isinstance(x, list) else x
    return len(first)


def monitor_sample(pair: Any, classes: Sequence[str] | None, task: str | None) -> MonitorSample:
    """Copy and check ``predictions=(x, y)``.

    Args:
        pair: ``(x, y)`` with at most ``MAX_MONITOR_SAMPLES`` samples.
        classes: Class names; their presence means classification.
        task: ``"classification"``, ``"regression"`` or None to infer: integer
            or one-hot targets (or given ``classes``) are a classification.

    Raises:
        TypeError: ``pair`` is not a pair of numeric arrays.
        ValueError: too many samples, x and y of different lengths, or a bad ``task``.
    """
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"predictions must be a pair (x, y), got {type(pair).__name__}")
    x, y = copy_inputs(pair[0], "predictions x"), _numeric(pair[1], "predictions y")
    if rows(x) != len(y) or not 0 < len(y) <= MAX_MONITOR_SAMPLES:
        raise ValueError(
            f"predictions needs 1..{MAX_MONITOR_SAMPLES} samples with as many targets; got {rows(x)} inputs "
            f"and {len(y)} targets. Pass a small fixed sample, e.g. (x_val[:256], y_val[:256])."
        )
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task must be 'classification', 'regression' or None, got {task!r}")
    task = task or ("classification" if classes or _looks_categorical(y) else "regression")
    if task == "classification":
        y = class_indices(y)
    return MonitorSample(x, y, task)


def _looks_categorical(y: Array) -> bool:
    if y.dtype.kind in "biu":
        return True
    if y.ndim == 2 and y.shape[1] > 1:
        return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))
    return False


def class_indices(y: Array) -> Array:
    """Class indices (n,) from indices of any shape (n,) / (n, 1) or from one-hot (n, c)."""
    if y.ndim == 2 and y.shape[1] > 1:
        return np.asarray(y.argmax(axis=1), dtype=np.int64)
    return np.asarray(y.reshape(len(y)), dtype=np.int64)


def send_data_summary(
    sink: DataSink, x: Inputs, y: Array | None, task: str, classes: Sequence[str] | None, *, name: str = "train"
) -> None:
    """Send a summary of each input: tabular features per column, images as pixel intensities.

    Images (3 or more axes) are sent twice: ``name`` holds each image's mean
    and standard deviation of intensity per channel, with the labels; ``name + "/pixels"`` holds a
    sample of raw pixel values per channel. Several inputs get one summary
    each, named ``name/<input>``. Regression targets join the features as
    ``target`` columns. Raises what ``Monitor.data_summary`` raises.
    """
    labels = class_indices(y) if y is not None and task == "classification" else None
    names = list(classes) if classes and labels is not None else None
    parts = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else [(None, x)]
    for key, array in parts:
        part = name if key is None else f"{name}/{key}"
        if array.ndim >= 3:
            _send_images(sink, array, labels, names, part)
            continue
        features = array.reshape(len(array), -1).astype(np.float64)
        feature_names = [f"x{j}" for j in range(features.shape[1])]
        if y is not None and labels is None:
            target = y.reshape(len(y), -1).astype(np.float64)
            features = np.concatenate([features, target], axis=1)
            feature_names += ["target"] if target.shape[1] == 1 else [f"target{j}" for j in range(target.shape[1])]
        sink.data_summary(features, labels, feature_names=feature_names, label_names=names, name=part)


def _send_images(sink: DataSink, images: Array, labels: Array | None, names: list[str] | None, part: str) -> None:
    channels = images.shape[-1] if images.ndim == 4 else 1
    pixels = images.reshape(len(images), -1, channels).astype(np.float64)
    channel_names = ["intensity"] if channels == 1 else [f"channel{c}" for c in range(channels)]
    per_image = np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)
    stats = [f"mean {c}" for c in channel_names] + [f"std {c}" for c in channel_names]
    sink.data_summary(per_image, labels, feature_names=stats, label_names=names, name=part)
    flat = pixels.reshape(-1, channels)
    if len(flat) > MAX_PIXELS:
        flat = flat[np.random.default_rng(0).choice(len(flat), MAX_PIXELS, replace=False)]
    sink.data_summary(flat, None, feature_names=channel_names, name=f"{part}/pixels", sample_size=0)
