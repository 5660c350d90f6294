"""Model-graph extraction for Keras 3 models: layers as nodes, connections as edges.

``model_graph`` walks a model once (at train begin) and returns plain dicts
and name pairs in the shape ``Monitor.graph`` takes. Sequential models become
a chain; Functional models use their node graph (several inputs and outputs,
shared layers each appear once with one edge per call); nested Sequential or
Functional models are expanded in place, their layers named
``"outer/inner"``. Subclassed models have no static graph, so they yield
their tracked layers as nodes and no edges.

The walk reads Keras's functional-graph bookkeeping (``_nodes_by_depth``,
``Node.parent_nodes``), which Keras 3 does not expose publicly; if a future
Keras changes it, the walk degrades to the layer list instead of raising.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import keras

logger = logging.getLogger(__name__)

GraphNodeDict = dict[str, Any]
Edge = tuple[str, str]


@dataclass
class _Walk:
    """Nodes and edges found so far, and each layer's entry and exit node names."""

    nodes: list[GraphNodeDict] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    _seen: set[Edge] = field(default_factory=set)

    def add_edges(self, sources: list[str], targets: list[str]) -> None:
        for edge in ((src, dst) for src in sources for dst in targets if src != dst):
            if edge not in self._seen:
                self._seen.add(edge)
                self.edges.append(edge)


@dataclass(frozen=True)
class _Ends:
    """Where a (possibly nested) layer's graph starts and ends, by node name."""

    entries: list[str]
    exits: list[str]


def model_graph(model: Any) -> tuple[list[GraphNodeDict], list[Edge]]:
    """Extract a model's layers and their connections.

    Args:
        model: a built Keras 3 model (Sequential, Functional or subclassed).

    Returns:
        ``(nodes, edges)``: nodes as dicts with ``name``, ``type``,
        ``output_shape`` (a string, ``""`` when unknown), ``params`` and
        ``trainable`` parameter counts; edges as ``(src_name, dst_name)``.
        Never raises for an unusual model: unknown structure degrades to a
        node list without edges (logged at debug level).
    """
    walk = _Walk()
    try:
        _walk_model(model, "", walk)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        logger.debug("graph walk of %s failed (%s); sending its layer list only", model.name, exc)
        walk = _Walk(nodes=[_node(layer, "") for layer in _sublayers(model)])
    return walk.nodes, walk.edges


def _walk_model(model: Any, prefix: str, walk: _Walk) -> _Ends:
    if isinstance(model, keras.Sequential):
        return _walk_sequential(model, prefix, walk)
    if _is_functional(model):
        return _walk_functional(model, prefix, walk)
    names = [_walk_layer(layer, prefix, walk) for layer in _sublayers(model)]
    return _Ends([e for n in names for e in n.entries], [e for n in names for e in n.exits])


def _walk_layer(layer: Any, prefix: str, walk: _Walk) -> _Ends:
    if isinstance(layer, keras.Sequential) or _is_functional(layer):
        return _walk_model(layer, f"{prefix}{layer.name}/", walk)
    walk.nodes.append(_node(layer, prefix))
    name = prefix + layer.name
    return _Ends([name], [name])


def _walk_sequential(model: Any, prefix: str, walk: _Walk) -> _Ends:
    ends = [_walk_layer(layer, prefix, walk) for layer in model.layers]
    for before, after in itertools.pairwise(ends):
        walk.add_edges(before.exits, after.entries)
    if not ends:
        return _Ends([], [])
    return _Ends(ends[0].entries, ends[-1].exits)


def _walk_functional(model: Any, prefix: str, walk: _Walk) -> _Ends:
    ends = {id(op): _walk_layer(op, prefix, walk) for op in model.operations}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            _connect(node, ends, walk)
    entries = [ends[id(t._keras_history.operation)].entries[0] for t in model.inputs]
    exits = [name for t in model.outputs for name in ends[id(t._keras_history.operation)].exits]
    return _Ends(entries, exits)


def _connect(node: Any, ends: dict[int, _Ends], walk: _Walk) -> None:
    """Add edges from the layers feeding ``node``'s inputs into its layer."""
    target = ends.get(id(node.operation))
    if target is None:
        return
    inputs = list(node.input_tensors)
    positional = len(target.entries) == len(inputs) > 1
    for position, tensor in enumerate(inputs):
        source = ends.get(id(tensor._keras_history.operation))
        if source is not None:
            walk.add_edges(source.exits, [target.entries[position]] if positional else target.entries)


def _is_functional(model: Any) -> bool:
    return (
        hasattr(model, "_nodes_by_depth") and hasattr(model, "operations") and not isinstance(model, keras.Sequential)
    )


def _sublayers(model: Any) -> list[Any]:
    layers = getattr(model, "layers", None)
    return list(layers) if layers else []


def _node(layer: Any, prefix: str) -> GraphNodeDict:
    return {
        "name": prefix + layer.name,
        "type": type(layer).__name__,
        "output_shape": _output_shape(layer),
        "params": _count(layer.weights),
        "trainable": _count(layer.trainable_weights),
    }


def _count(variables: list[Any]) -> int:
    total = 0
    for variable in variables:
        size = 1
        for dim in variable.shape:
            size *= int(dim)
        total += size
    return total


def _output_shape(layer: Any) -> str:
    """The shape of the layer's first call's output(s), e.g. ``"(None, 32)"``."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if not nodes:
        return ""
    shapes = [tuple(t.shape) for t in nodes[0].output_tensors]
    text = str(shapes[0]) if len(shapes) == 1 else ", ".join(str(s) for s in shapes)
    return text[:200]
