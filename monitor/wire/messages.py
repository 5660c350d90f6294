"""Typed message classes of the wire protocol, one dataclass per kind.

Producer to server: ``Hello``, ``Scalars``, ``Histogram``, ``Predictions``,
``Graph``, ``DataSummary``, ``Event``, ``Finish``. Server to producer:
``Welcome``, ``Ack``, ``Error``. Each class knows its wire fields and arrays
(``wire_fields``/``wire_arrays``) and how to read itself back, validated,
from a ``FieldReader`` (``read``). Instances are immutable; arrays are numpy
arrays in their canonical dtype (int64 steps and counts, float64 values), except that
prediction outputs, embeddings and data samples keep a float16/32 dtype as sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from monitor.wire.fields import FieldReader
from monitor.wire.limits import MAX_TEXT_LENGTH, PROTOCOL_VERSION

Array = np.ndarray[Any, Any]
EventLevel = Literal["info", "warning", "error"]
FinishStatus = Literal["finished", "crashed"]
Task = Literal["classification", "regression"]
_NO_ARRAYS: dict[str, Array] = {}


def _nonfinite(array: Array | None) -> int:
    if array is None or array.dtype.kind != "f":
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


@dataclass(frozen=True, eq=False)
class Hello:
    """Opens (or resumes) a run on a connection; answered by ``Welcome``.

    ``stream`` names one producer instance: sequence numbers count per
    (run, stream), so a restarted process resuming a run starts its own count.
    """

    kind: ClassVar[Literal["hello"]] = "hello"
    run: str
    stream: str
    name: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    framework: str = ""
    rank: int = 0
    world_size: int = 1
    protocol: int = PROTOCOL_VERSION
    seq: int = 0

    def wire_fields(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "name": self.name,
            "project": self.project,
            "config": self.config,
            "host": self.host,
            "framework": self.framework,
            "rank": self.rank,
            "world_size": self.world_size,
            "protocol": self.protocol,
        }

    def wire_arrays(self) -> dict[str, Array]:
        return _NO_ARRAYS

    @classmethod
    def read(cls, r: FieldReader) -> Hello:
        protocol = r.integer("protocol")
        if protocol != PROTOCOL_VERSION:
            raise r.fail("bad_version", f"protocol {protocol} is not supported; this server speaks {PROTOCOL_VERSION}")
        world = r.integer("world_size", 1, low=1, high=1_000_000)
        return cls(
            run=r.run_id(),
            stream=r.string("stream", empty=False),
            name=r.string("name", ""),
            project=r.string("project", ""),
            config=r.json_object("config"),
            host=r.string("host", ""),
            framework=r.string("framework", ""),
            rank=r.integer("rank", 0, low=0, high=world - 1),
            world_size=world,
            protocol=protocol,
        )


@dataclass(frozen=True, eq=False)
class Scalars:
    """Scalar points in long form: point i is ``names[index[i]]`` at ``steps[i]``.

    Many steps and many series travel in one frame. Values may be NaN or
    infinite; ``nonfinite`` counts them so the server can flag them.
    """

    kind: ClassVar[Literal["scalars"]] = "scalars"
    run: str
    seq: int
    names: tuple[str, ...]
    steps: Array
    wall: Array
    index: Array
    values: Array

    @property
    def nonfinite(self) -> int:
        return _nonfinite(self.values)

    def wire_fields(self) -> dict[str, Any]:
        return {"names": list(self.names)}

    def wire_arrays(self) -> dict[str, Array]:
        return {"steps": self.steps, "wall": self.wall, "index": self.index, "values": self.values}

    @classmethod
    def read(cls, r: FieldReader) -> Scalars:
        names = r.names("names")
        steps = r.required("steps", "int", (1,))
        wall, index = r.required("wall", "float", (1,)), r.required("index", "int", (1,))
        values = r.required("values", "float", (1,))
        r.rows("'steps'", {"wall": wall, "index": index, "values": values}, len(steps))
        if len(index) and (index.min() < 0 or index.max() >= len(names)):
            raise r.fail("bad_field", f"'index' must point into 'names' (0..{len(names) - 1})")
        return cls(r.run_id(), r.raw.seq, names, steps, wall, index, values)


@dataclass(frozen=True, eq=False)
class Histogram:
    """A summary of one tensor at one step: bin edges and counts plus moments."""

    kind: ClassVar[Literal["histogram"]] = "histogram"
    run: str
    seq: int
    name: str
    step: int
    wall: float
    edges: Array
    counts: Array
    min: float
    max: float
    mean: float
    std: float
    count: int
    nonfinite: int

    def wire_fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "wall": self.wall,
            "count": self.count,
            "nonfinite": self.nonfinite,
        }

    def wire_arrays(self) -> dict[str, Array]:
        stats = np.array([self.min, self.max, self.mean, self.std], dtype=np.float64)
        return {"edges": self.edges, "counts": self.counts, "stats": stats}

    @classmethod
    def read(cls, r: FieldReader) -> Histogram:
        edges, counts = r.required("edges", "float", (1,)), r.required("counts", "float", (1,))
        stats = r.required("stats", "float", (1,))
        if len(counts) < 1 or len(edges) != len(counts) + 1:
            raise r.fail("bad_shape", f"need len(edges) == len(counts) + 1 >= 2, got {len(edges)} and {len(counts)}")
        if len(stats) != 4:
            raise r.fail("bad_shape", f"'stats' must be [min, max, mean, std], got {len(stats)} values")
        _check_bins(r, edges, counts)
        return cls(
            r.run_id(),
            r.raw.seq,
            r.string("name", empty=False),
            r.integer("step"),
            r.number("wall"),
            edges,
            counts,
            float(stats[0]),
            float(stats[1]),
            float(stats[2]),
            float(stats[3]),
            r.integer("count", low=0),
            r.integer("nonfinite", 0, low=0),
        )


def _check_bins(r: FieldReader, edges: Array, counts: Array) -> None:
    """Bin edges finite and ascending (along the last axis), counts finite and not negative.

    Ascending, not strictly: equal-width bins over a range a few ulps wide
    have some equal edges, and such a histogram is a real one.
    """
    if not np.isfinite(edges).all() or (np.diff(edges, axis=-1) < 0).any():
        raise r.fail("bad_field", "'edges' must be finite and ascending")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise r.fail("bad_field", "'counts' must be finite and not negative")


@dataclass(frozen=True, eq=False)
class Predictions:
    """Model outputs on a fixed monitor sample at one step.

    Classification: ``y_true`` holds class indices (n,), ``outputs`` class
    probabilities (n, c). Regression: ``outputs`` and ``y_true`` are (n,) or
    (n, d). ``embedding``, when sent, is (n, 2).
    """

    kind: ClassVar[Literal["predictions"]] = "predictions"
    run: str
    seq: int
    name: str
    step: int
    wall: float
    task: Task
    y_true: Array
    outputs: Array
    classes: tuple[str, ...] = ()
    embedding: Array | None = None

    def wire_fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "wall": self.wall,
            "task": self.task,
            "classes": list(self.classes),
        }

    def wire_arrays(self) -> dict[str, Array]:
        arrays = {"y_true": self.y_true, "outputs": self.outputs}
        return arrays if self.embedding is None else {**arrays, "embedding": self.embedding}

    @classmethod
    def read(cls, r: FieldReader) -> Predictions:
        task: Task = r.choice("task", ("classification", "regression"))
        classes = r.names("classes", [])
        outputs = r.required("outputs", "real", (1, 2))
        y_true = r.required("y_true", "int" if task == "classification" else "real", (1, 2))
        embedding = r.array("embedding", "real", (2,), optional=True)
        r.rows("'outputs'", {"y_true": y_true, "embedding": embedding}, len(outputs))
        if embedding is not None and embedding.shape[1] != 2:
            raise r.fail("bad_shape", f"'embedding' must be (n, 2), got {list(embedding.shape)}")
        if task == "classification":
            _check_classification(r, y_true, outputs, classes)
        elif y_true.shape != outputs.shape:
            raise r.fail("bad_shape", f"'y_true' {list(y_true.shape)} must match 'outputs' {list(outputs.shape)}")
        return cls(
            r.run_id(),
            r.raw.seq,
            r.string("name", empty=False),
            r.integer("step"),
            r.number("wall"),
            task,
            y_true,
            outputs,
            classes,
            embedding,
        )


def _check_classification(r: FieldReader, y_true: Array, outputs: Array, classes: tuple[str, ...]) -> None:
    if outputs.ndim != 2 or y_true.ndim != 1:
        raise r.fail("bad_shape", "classification needs 'outputs' (n, classes) and 'y_true' (n,) class indices")
    if classes and len(classes) != outputs.shape[1]:
        raise r.fail("bad_shape", f"{len(classes)} class names for {outputs.shape[1]} output columns")
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= outputs.shape[1]):
        raise r.fail("bad_field", f"'y_true' holds class indices outside 0..{outputs.shape[1] - 1}")


@dataclass(frozen=True)
class GraphNode:
    """One layer of a model graph."""

    name: str
    type: str
    output_shape: str = ""
    params: int = 0
    trainable: int = 0


@dataclass(frozen=True, eq=False)
class Graph:
    """The model's layers as nodes and their connections as (src, dst) edges."""

    kind: ClassVar[Literal["graph"]] = "graph"
    run: str
    seq: int
    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[str, str], ...]

    def wire_fields(self) -> dict[str, Any]:
        nodes = [[n.name, n.type, n.output_shape, n.params, n.trainable] for n in self.nodes]
        return {"nodes": nodes, "edges": [list(e) for e in self.edges]}

    def wire_arrays(self) -> dict[str, Array]:
        return _NO_ARRAYS

    @classmethod
    def read(cls, r: FieldReader) -> Graph:
        raw_nodes, raw_edges = r.raw.fields.get("nodes"), r.raw.fields.get("edges", [])
        if not isinstance(raw_nodes, list) or not isinstance(raw_edges, list):
            raise r.fail("missing_field", "'nodes' and 'edges' must be lists")
        if len(raw_nodes) > 10_000 or len(raw_edges) > 50_000:
            raise r.fail("limit_exceeded", f"{len(raw_nodes)} nodes / {len(raw_edges)} edges; limits 10000 / 50000")
        nodes = tuple(_node(r, n) for n in raw_nodes)
        known = {n.name for n in nodes}
        edges = tuple(_edge(r, e, known) for e in raw_edges)
        return cls(r.run_id(), r.raw.seq, nodes, edges)


def _node(r: FieldReader, raw: Any) -> GraphNode:
    ok = isinstance(raw, list) and len(raw) == 5 and all(isinstance(x, str) for x in raw[:3])
    ok = ok and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in raw[3:])
    if not ok or not raw[0] or any(len(x) > 200 for x in raw[:3]):
        raise r.fail("bad_field", f"node must be [name, type, output_shape, params, trainable], got {raw!r:.120}")
    return GraphNode(raw[0], raw[1], raw[2], raw[3], raw[4])


def _edge(r: FieldReader, raw: Any, known: set[str]) -> tuple[str, str]:
    if not isinstance(raw, list) or len(raw) != 2 or not all(isinstance(x, str) and x in known for x in raw):
        raise r.fail("bad_field", f"edge must be [src, dst] naming known nodes, got {raw!r:.120}")
    return raw[0], raw[1]


@dataclass(frozen=True, eq=False)
class DataSummary:
    """Input data at a glance: per-feature histograms, label counts, a sample.

    ``edges`` is (features, bins + 1) and ``counts`` (features, bins). The
    optional ``sample`` is (n, d) with column names ``sample_names`` and
    optional class indices ``sample_labels`` (n,).
    """

    kind: ClassVar[Literal["data"]] = "data"
    run: str
    seq: int
    name: str
    step: int
    wall: float
    feature_names: tuple[str, ...]
    edges: Array
    counts: Array
    label_names: tuple[str, ...] = ()
    label_counts: Array | None = None
    sample_names: tuple[str, ...] = ()
    sample: Array | None = None
    sample_labels: Array | None = None

    def wire_fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step": self.step,
            "wall": self.wall,
            "feature_names": list(self.feature_names),
            "label_names": list(self.label_names),
            "sample_names": list(self.sample_names),
        }

    def wire_arrays(self) -> dict[str, Array]:
        optional = {"label_counts": self.label_counts, "sample": self.sample, "sample_labels": self.sample_labels}
        return {"edges": self.edges, "counts": self.counts, **{k: v for k, v in optional.items() if v is not None}}

    @classmethod
    def read(cls, r: FieldReader) -> DataSummary:
        features = r.names("feature_names")
        edges, counts = r.required("edges", "float", (2,)), r.required("counts", "float", (2,))
        if edges.shape[0] != len(features) or counts.shape[0] != len(features) or edges.shape[1] != counts.shape[1] + 1:
            raise r.fail(
                "bad_shape",
                f"need edges (f, b+1) and counts (f, b) for f={len(features)}, "
                f"got {list(edges.shape)} and {list(counts.shape)}",
            )
        _check_bins(r, edges, counts)
        labels, label_counts = r.names("label_names", []), r.array("label_counts", "int", (1,), optional=True)
        if label_counts is not None and len(label_counts) != len(labels):
            raise r.fail("bad_shape", f"{len(label_counts)} label counts for {len(labels)} label names")
        sample_names, sample = r.names("sample_names", []), r.array("sample", "real", (2,), optional=True)
        sample_labels = r.array("sample_labels", "int", (1,), optional=True)
        if sample is not None:
            if sample.shape[1] != len(sample_names):
                raise r.fail("bad_shape", f"'sample' has {sample.shape[1]} columns for {len(sample_names)} names")
            r.rows("'sample'", {"sample_labels": sample_labels}, len(sample))
        return cls(
            r.run_id(),
            r.raw.seq,
            r.string("name", "train", empty=False),
            r.integer("step", 0),
            r.number("wall"),
            features,
            edges,
            counts,
            labels,
            label_counts,
            sample_names,
            sample,
            sample_labels,
        )


@dataclass(frozen=True, eq=False)
class Event:
    """Text a run wants on screen (NaN detected, checkpoint saved)."""

    kind: ClassVar[Literal["event"]] = "event"
    run: str
    seq: int
    step: int
    wall: float
    level: EventLevel
    text: str

    def wire_fields(self) -> dict[str, Any]:
        return {"step": self.step, "wall": self.wall, "level": self.level, "text": self.text}

    def wire_arrays(self) -> dict[str, Array]:
        return _NO_ARRAYS

    @classmethod
    def read(cls, r: FieldReader) -> Event:
        level: EventLevel = r.choice("level", ("info", "warning", "error"), "info")
        text = r.string("text", limit=MAX_TEXT_LENGTH, empty=False)
        return cls(r.run_id(), r.raw.seq, r.integer("step", -1), r.number("wall"), level, text)


@dataclass(frozen=True, eq=False)
class Finish:
    """The run ended: ``finished`` normally or ``crashed``."""

    kind: ClassVar[Literal["finish"]] = "finish"
    run: str
    seq: int
    wall: float
    status: FinishStatus

    def wire_fields(self) -> dict[str, Any]:
        return {"wall": self.wall, "status": self.status}

    def wire_arrays(self) -> dict[str, Array]:
        return _NO_ARRAYS

    @classmethod
    def read(cls, r: FieldReader) -> Finish:
        status: FinishStatus = r.choice("status", ("finished", "crashed"))
        return cls(r.run_id(), r.raw.seq, r.number("wall"), status)


@dataclass(frozen=True, eq=False)
class Welcome:
    """Server's answer to ``Hello``: the last seq it has persisted for the stream."""

    kind: ClassVar[Literal["welcome"]] = "welcome"
    run: str
    stream: str
    last_seq: int
    seq: int = 0

    def wire_fields(self) -> dict[str, Any]:
        return {"stream": self.stream, "last_seq": self.last_seq}

    def wire_arrays(self) -> dict[str, Array]:
        return _NO_ARRAYS

    @classmethod
    def read(cls, r: FieldReader) -> Welcome:
        return cls(r.run_id(), r.string("stream"), r.integer("last_seq", low=0))


@dataclass(frozen=True, eq=False)
class Ack:
    """Every frame of the run's stream up to ``seq`` is persisted."""

    kind: ClassVar[Literal["ack"]] = "ack"
    run: str
    seq: int

    def wire_fields(self) -> dict[str, Any]:
        return {}

    def wire_arrays(self) -> dict[str, Array]:
        return _NO_ARRAYS

    @classmethod
    def read(cls, r: FieldReader) -> Ack:
        return cls(r.run_id(), r.raw.seq)


@dataclass(frozen=True, eq=False)
class Error:
    """A frame was refused: ``code`` says why, ``message`` says how to fix it."""

    kind: ClassVar[Literal["error"]] = "error"
    run: str | None
    seq: int
    code: str
    message: str

    def wire_fields(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def wire_arrays(self) -> dict[str, Array]:
        return _NO_ARRAYS

    @classmethod
    def read(cls, r: FieldReader) -> Error:
        return cls(r.raw.run, r.raw.seq, r.string("code"), r.string("message", limit=MAX_TEXT_LENGTH))


ProducerMessage = Hello | Scalars | Histogram | Predictions | Graph | DataSummary | Event | Finish
ServerMessage = Welcome | Ack | Error
Message = ProducerMessage | ServerMessage
DataMessage = Scalars | Histogram | Predictions | Graph | DataSummary | Event | Finish
"""Messages that carry a run's data and a sequence number."""
