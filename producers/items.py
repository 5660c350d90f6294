"""Queued items: the checked, copied arguments of ``Monitor`` calls and their frame builders.

The checks run on the training thread, so they stay cheap: type, shape and
range tests and one copy of each array, never histogramming or encoding.
Each raises ``TypeError`` or ``ValueError`` naming the argument and the fix.
A ``Builder`` is what a call leaves in the queue: a function of (run, seq)
that the sender's thread calls to make the frame's message, doing the heavy
work there.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, cast

import numpy as np

from monitor.wire import (
    MAX_ARRAY_ELEMENTS,
    MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    RUN_ID_PATTERN,
    DataMessage,
    Event,
    EventLevel,
    GraphNode,
    Predictions,
    Task,
)
from monitor.wire.limits import MAX_JSON_DEPTH, MAX_NAMES, MAX_TEXT_LENGTH
from producers.stats import DataInput, ScalarItem, data_summary_message, from_counts, histogram_message, summarize

Array = np.ndarray[Any, Any]
Builder = Callable[[str, int], DataMessage]
"""Makes one frame's message from (run, seq); called on the sender's thread."""

_MAX_STEP = 2**63 - 1
_MAX_PAYLOAD = MAX_MESSAGE_BYTES - 1024 * 1024
_NODE_KEYS = ("name", "type", "output_shape", "params", "trainable")
_LEVELS: tuple[EventLevel, ...] = ("info", "warning", "error")


Item = ScalarItem | Builder


def name(value: Any, arg: str, *, empty: bool = False) -> str:
    """A name of at most ``MAX_NAME_LENGTH`` characters, non-empty unless ``empty``."""
    if not isinstance(value, str):
        raise TypeError(f"{arg} must be a string, got {type(value).__name__}")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{arg} {value[:40]!r}... is {len(value)} characters, over the limit of {MAX_NAME_LENGTH}")
    if not value and not empty:
        raise ValueError(f"{arg} must not be empty")
    return value


def text(value: Any) -> str:
    """Event text: a non-empty string of at most ``MAX_TEXT_LENGTH`` characters."""
    if not isinstance(value, str):
        raise TypeError(f"text must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"text must be 1 to {MAX_TEXT_LENGTH} characters, got {len(value)}")
    return value


def level(value: Any) -> EventLevel:
    """An event level: ``"info"``, ``"warning"`` or ``"error"``."""
    if value not in _LEVELS:
        raise ValueError(f"level must be one of {list(_LEVELS)}, got {value!r:.80}")
    return cast(EventLevel, value)


def run_id(value: Any) -> str:
    """A run id: 1-200 of ``[A-Za-z0-9._-]``, starting alphanumeric."""
    if not isinstance(value, str):
        raise TypeError(f"run must be a string, got {type(value).__name__}")
    if not RUN_ID_PATTERN.match(value):
        raise ValueError(f"run {value!r:.80} must be 1-200 of [A-Za-z0-9._-], starting with a letter or digit")
    return value


def count(value: Any, arg: str, low: int, high: int = _MAX_STEP) -> int:
    """An integer (not bool) in [low, high]."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{arg} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{arg} must be in [{low}, {high}], got {value}")
    return int(value)


def step(value: Any) -> int:
    """A training step: an integer in [0, 2**63)."""
    return count(value, "step", 0)


def metrics(values: Mapping[Any, Any]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Names and float values of a ``log`` call; the common all-float case is checked in bulk."""
    names = tuple(values)
    for key in names:
        if type(key) is not str or not key or len(key) > MAX_NAME_LENGTH:
            name(key, "metrics name")
    numbers = tuple(values.values())
    if not all(type(value) is float for value in numbers):
        numbers = tuple(number(value, f"metrics[{key!r}]") for key, value in values.items())
    return names, numbers


def number(value: Any, arg: str) -> float:
    """A metric value: anything ``float()`` accepts except strings and complex numbers; NaN allowed."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{arg} must be a number, got {type(value).__name__} {value!r:.40}")
    dtype = getattr(value, "dtype", None)  # numpy's has a kind, TensorFlow's and torch's say is_complex
    if isinstance(value, complex) or getattr(dtype, "kind", "") == "c" or getattr(dtype, "is_complex", False):
        # float() of a numpy complex keeps the real part with only a ComplexWarning
        raise TypeError(f"{arg} must be a real number, got complex {value!r:.40}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{arg} must be a number, got {type(value).__name__}: {exc}") from exc


def ws_endpoint(url: Any) -> str:
    """The ingest websocket address for a server url (``http`` -> ``ws``, ``https`` -> ``wss``)."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    try:
        valid = scheme is not None and bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"url must look like http://host:port, got {url!r:.120}")
    path = parts.path.rstrip("/")
    path = path if path.endswith("/ws/ingest") else f"{path}/ws/ingest"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def json_depth(value: Any, arg: str = "config", level: int = 0) -> None:
    """Raise ``ValueError`` when a JSON value nests deeper than the wire allows."""
    if level > MAX_JSON_DEPTH:
        raise ValueError(f"{arg} is nested deeper than {MAX_JSON_DEPTH} levels")
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        json_depth(child, arg, level + 1)


def numeric(value: Any, arg: str, ndims: Sequence[int] = ()) -> Array:
    """A private copy of a numeric (bool, int or float) array of one of ``ndims`` ranks."""
    try:
        array = np.array(value, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg} must be a rectangular numeric array: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{arg} must be numeric, got dtype {array.dtype}")
    if ndims and array.ndim not in ndims:
        raise ValueError(f"{arg} must have {' or '.join(map(str, ndims))} dimensions, got shape {list(array.shape)}")
    return array


def histogram_builder(hist_name: str, step: int, wall: float, values: Any, bins: int) -> Builder:
    """Check histogram input: raw values, or an ``(edges, counts)`` pair of 1-D arrays."""
    if isinstance(values, tuple) and len(values) == 2 and all(np.ndim(v) == 1 for v in values):
        summary = _binned(numeric(values[0], "edges"), numeric(values[1], "counts"))
        return lambda run, seq: histogram_message(run, seq, from_counts(*summary), name=hist_name, step=step, wall=wall)
    array = numeric(values, "values")
    return lambda run, seq: histogram_message(run, seq, summarize(array, bins), name=hist_name, step=step, wall=wall)


def _binned(edges: Array, counts: Array) -> tuple[Array, Array]:
    if len(counts) < 1 or len(edges) != len(counts) + 1 or len(counts) > MAX_ARRAY_ELEMENTS - 1:
        raise ValueError(f"edges must have len(counts) + 1 >= 2 entries, got {len(edges)} edges, {len(counts)} counts")
    if not np.all(np.isfinite(edges)) or not np.all(np.diff(edges.astype(np.float64)) > 0):  # uint diffs wrap
        raise ValueError("edges must be finite and strictly increasing")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("counts must be finite and >= 0")
    return edges, counts


def predictions_builder(
    pred_name: str,
    step: int,
    wall: float,
    *,
    y_true: Any,
    outputs: Any,
    classes: Sequence[str] | None,
    embedding: Any,
    task: str | None,
) -> Builder:
    """Check predictions: shapes, task, class names; y_true is converted to indices later."""
    out, truth = numeric(outputs, "outputs", (1, 2)), numeric(y_true, "y_true", (1, 2))
    if len(out) == 0 or len(truth) != len(out):
        raise ValueError(f"y_true and outputs need the same number of rows (>= 1), got {len(truth)} and {len(out)}")
    emb = None if embedding is None else numeric(embedding, "embedding", (2,))
    if emb is not None and emb.shape != (len(out), 2):
        raise ValueError(f"embedding must be (n, 2) = ({len(out)}, 2), got {list(emb.shape)}")
    kind = _task(task, truth, out)
    names = _class_names(classes, kind, out)
    truth = _labels(truth, len(names) or _columns(out), "y_true") if kind == "classification" else _targets(truth, out)
    if sum(a.size for a in (out, truth, emb) if a is not None) * 8 > _MAX_PAYLOAD or out.size > MAX_ARRAY_ELEMENTS:
        raise ValueError(f"predictions on {len(out)} samples are too large for one frame; send a smaller sample")
    return lambda run, seq: Predictions(
        run,
        seq,
        pred_name,
        step,
        wall,
        kind,
        _indices(truth) if kind == "classification" else truth.astype(float),
        _probabilities(out) if kind == "classification" else out.astype(float),
        names,
        emb,
    )


def _columns(out: Array) -> int:
    return 2 if out.ndim == 1 or out.shape[1] == 1 else int(out.shape[1])


def _task(task: str | None, truth: Array, out: Array) -> Task:
    if task is not None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification', 'regression' or None, got {task!r:.80}")
        return cast(Task, task)
    wide = out.ndim == 2 and out.shape[1] > 1
    one_hot = truth.shape == out.shape and bool(np.all((truth == 0) | (truth == 1))) and bool(np.all(truth.sum(1) == 1))
    return "classification" if wide and ((_integral(truth) and truth.ndim == 1) or one_hot) else "regression"


def _integral(array: Array) -> bool:
    return array.dtype.kind in "biu" or bool(np.all(np.isfinite(array)) and np.all(np.mod(array, 1) == 0))


def _class_names(classes: Sequence[str] | None, kind: Task, out: Array) -> tuple[str, ...]:
    if classes is None:
        return ()
    if kind == "regression":
        raise ValueError("classes only apply to classification; leave classes=None for regression")
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a sequence of names, got {type(classes).__name__}")
    names = tuple(name(c, "classes entry") for c in classes)
    if len(names) != _columns(out):
        raise ValueError(f"classes has {len(names)} names for {_columns(out)} output columns")
    return names


def _labels(truth: Array, classes: int, arg: str) -> Array:
    if truth.ndim == 2:
        if truth.shape[1] != classes:
            raise ValueError(f"one-hot {arg} has {truth.shape[1]} columns for {classes} classes")
        return truth
    if not _integral(truth) or (len(truth) and (truth.min() < 0 or truth.max() >= classes)):
        raise ValueError(f"{arg} must hold class indices in [0, {classes - 1}] or be one-hot (n, {classes})")
    return truth


def _targets(truth: Array, out: Array) -> Array:
    if (
        truth.shape != out.shape
        and truth.size == out.size
        and max(truth.ndim, out.ndim) <= 2
        and truth.size == len(out)
    ):
        return truth.reshape(out.shape)
    if truth.shape != out.shape:
        raise ValueError(f"regression y_true {list(truth.shape)} must match outputs {list(out.shape)}")
    return truth


def _indices(truth: Array) -> Array:
    return (truth.argmax(axis=1) if truth.ndim == 2 else truth).astype(np.int64)


def _probabilities(out: Array) -> Array:
    if out.ndim == 2 and out.shape[1] > 1:
        return out.astype(float)
    p = out.reshape(-1).astype(float)
    return np.column_stack([1.0 - p, p])


def graph(
    nodes: Iterable[Mapping[str, Any] | GraphNode], edges: Iterable[Sequence[str]]
) -> tuple[tuple[GraphNode, ...], tuple[tuple[str, str], ...]]:
    """Check a model graph: nodes with unique names, edges between known nodes."""
    if isinstance(nodes, (str, bytes, Mapping)) or not isinstance(nodes, Iterable):
        raise TypeError(f"nodes must be an iterable of dicts or GraphNode, got {type(nodes).__name__}")
    node_list = tuple(_node(node, i) for i, node in enumerate(nodes))
    known = {node.name for node in node_list}
    if len(node_list) > MAX_NAMES or len(known) != len(node_list):
        raise ValueError(f"nodes must have unique names, at most {MAX_NAMES} of them")
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Iterable):
        raise TypeError(f"edges must be an iterable of (src, dst) pairs, got {type(edges).__name__}")
    edge_list = tuple(_edge(edge, i, known) for i, edge in enumerate(edges))
    if len(edge_list) > 50_000:
        raise ValueError(f"graph has {len(edge_list)} edges, over the limit of 50000")
    return node_list, edge_list


def _node(node: Mapping[str, Any] | GraphNode, i: int) -> GraphNode:
    fields = asdict(node) if isinstance(node, GraphNode) else node
    if not isinstance(fields, Mapping):
        raise TypeError(f"nodes[{i}] must be a dict or GraphNode, got {type(node).__name__}")
    unknown = set(fields) - set(_NODE_KEYS)
    if unknown or "name" not in fields:
        raise ValueError(f"nodes[{i}] needs 'name' and only keys {list(_NODE_KEYS)}; got {sorted(map(str, fields))}")
    shape = fields.get("output_shape", "")
    shape = shape if isinstance(shape, str) else str(tuple(shape))
    return GraphNode(
        name(fields["name"], f"nodes[{i}]['name']"),
        name(fields.get("type", ""), f"nodes[{i}]['type']", empty=True),
        name(shape, f"nodes[{i}]['output_shape']", empty=True),
        count(fields.get("params", 0), f"nodes[{i}]['params']", 0),
        count(fields.get("trainable", 0), f"nodes[{i}]['trainable']", 0),
    )


def _edge(edge: Sequence[str], i: int, known: set[str]) -> tuple[str, str]:
    if isinstance(edge, str) or not isinstance(edge, Sequence) or len(edge) != 2:
        raise TypeError(f"edges[{i}] must be a (src, dst) pair of node names, got {edge!r:.80}")
    src, dst = edge
    if src not in known or dst not in known:
        raise ValueError(f"edges[{i}] = {tuple(edge)!r:.120} names a node that is not in nodes")
    return str(src), str(dst)


def data_input(
    data_name: str,
    step: int,
    wall: float,
    *,
    features: Any,
    labels: Any,
    feature_names: Sequence[str] | None,
    label_names: Sequence[str] | None,
    bins: int,
    sample_size: int,
) -> DataInput:
    """Check a data set for ``data_summary``; features become (n, d), labels stay as given."""
    x = numeric(features, "features")
    x = x.reshape(len(x), -1) if x.ndim > 1 and x.size else x.reshape(-1, 1)
    if len(x) == 0 or x.shape[1] == 0 or x.shape[1] > MAX_NAMES:
        raise ValueError(f"features must be (n, d) with n >= 1 and 1 <= d <= {MAX_NAMES}, got {list(x.shape)}")
    bins = count(bins, "bins", 1, min(10_000, MAX_ARRAY_ELEMENTS // x.shape[1] - 1))
    names = _names(feature_names, "feature_names", x.shape[1], "f")
    y = None if labels is None else numeric(labels, "labels", (1, 2))
    if y is not None and len(y) != len(x):
        raise ValueError(f"labels has {len(y)} rows for {len(x)} feature rows")
    if y is None and label_names is not None:
        raise ValueError("label_names needs labels")
    classes = 0 if y is None else y.shape[1] if y.ndim == 2 else _class_count(y, label_names)
    y = None if y is None else _labels(y, classes, "labels")
    return DataInput(
        data_name,
        step,
        wall,
        x,
        names,
        y,
        _names(label_names, "label_names", classes, ""),
        bins,
        count(sample_size, "sample_size", 0),
    )


def _class_count(labels: Array, label_names: Sequence[str] | None) -> int:
    if not _integral(labels) or (len(labels) and labels.min() < 0):
        raise ValueError("labels must be non-negative class indices (n,) or one-hot (n, c)")
    return len(label_names) if label_names is not None else int(labels.max()) + 1 if len(labels) else 0


def _names(given: Sequence[str] | None, arg: str, expected: int, prefix: str) -> tuple[str, ...]:
    if given is None:
        return tuple(f"{prefix}{i}" for i in range(expected))
    if isinstance(given, str) or not isinstance(given, Sequence):
        raise TypeError(f"{arg} must be a sequence of names, got {type(given).__name__}")
    names = tuple(name(n, f"{arg} entry") for n in given)
    if len(names) != expected:
        raise ValueError(f"{arg} has {len(names)} names, expected {expected}")
    return names


def data_builder(data: DataInput) -> Builder:
    """Defer the data summary (histograms, label counts, sample) to the sender's thread."""

    def build(run: str, seq: int) -> DataMessage:
        labels = None if data.labels is None else _indices(data.labels)
        return data_summary_message(run, seq, DataInput(**{**data.__dict__, "labels": labels}))

    return build


def event_builder(message: str, event_level: EventLevel, step: int, wall: float) -> Builder:
    """Defer an event frame to the sender's thread."""
    return lambda run, seq: Event(run, seq, step, wall, event_level, message)
