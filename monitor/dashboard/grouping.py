"""Which training curves share a chart.

A chart holds one metric in all its variants: ``loss`` with ``val_loss``,
``accuracy`` with ``val_accuracy``; the learning rate and the gradient norm
each get their own chart whatever they are called (Keras's TensorBoard
callback's ``epoch_learning_rate`` too, as ``labscreen import-tb`` brings it;
its ``epoch_loss`` and ``epoch_accuracy`` come first as ``loss`` and
``accuracy`` do, on charts of their own: their steps are epochs). A name with a path
(``weights_norm/dense/kernel``, ``update_ratio/conv/bias``) goes on the chart
of its first component, as in TensorBoard, so per-tensor series share one
chart instead of one each. Pure functions, no Bokeh.
"""

from __future__ import annotations

from collections.abc import Iterable

LEARNING_RATE = "learning rate"
GRADIENT_NORM = "gradient norm"
HEADER_ONLY = frozenset({"epoch"})
"""Scalars the header shows and the curves leave out."""

_SPLIT_PREFIXES = ("validation_", "validation/", "val_", "val/", "training_", "training/", "train_", "train/")
_VALIDATION_PREFIXES = ("validation_", "validation/", "val_", "val/")
_ALIASES = {
    "lr": LEARNING_RATE, "learning_rate": LEARNING_RATE, "learning-rate": LEARNING_RATE,
    "grad_norm": GRADIENT_NORM, "gradient_norm": GRADIENT_NORM, "global_norm": GRADIENT_NORM,
    "grad-norm": GRADIENT_NORM, "gradients_norm": GRADIENT_NORM,
    "epoch_learning_rate": LEARNING_RATE, "epoch_lr": LEARNING_RATE,  # Keras's TensorBoard callback (import-tb)
}  # fmt: skip
_FIRST = ("loss", "accuracy", "acc", "epoch_loss", "epoch_accuracy", "epoch_acc")
_LAST = (LEARNING_RATE, GRADIENT_NORM)


def series_key(name: str) -> str:
    """A series' name without its training or validation prefix, e.g. ``"val_loss"`` -> ``"loss"``."""
    for prefix in _SPLIT_PREFIXES:
        if name.lower().startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return name


def chart_key(name: str) -> str:
    """The chart a scalar belongs on, e.g. ``"val_loss"`` -> ``"loss"``."""
    base = series_key(name)
    head = base.split("/", 1)[0]
    base = head if head else base
    return _ALIASES.get(base.lower(), base)


def is_validation(name: str) -> bool:
    """Whether ``name`` is a validation variant (drawn dashed)."""
    return name.lower().startswith(_VALIDATION_PREFIXES)


def group_metrics(names: Iterable[str]) -> dict[str, list[str]]:
    """Group scalar names into charts.

    Args:
        names: Scalar series names, in any order; duplicates are ignored.

    Returns:
        Chart key to the sorted names on that chart, loss and accuracy first,
        learning rate and gradient norm last, the rest alphabetical between.
        Names in ``HEADER_ONLY`` are left out.
    """
    groups: dict[str, set[str]] = {}
    for name in names:
        if name not in HEADER_ONLY:
            groups.setdefault(chart_key(name), set()).add(name)
    return {key: sorted(groups[key]) for key in sorted(groups, key=_chart_order)}


def _chart_order(key: str) -> tuple[int, str]:
    if key in _FIRST:
        return (0, f"{_FIRST.index(key)}")
    if key in _LAST:
        return (2, f"{_LAST.index(key)}")
    return (1, key)
