"""A layered layout of a model graph, top to bottom.

Layers of the model become rows by longest path from the inputs; within a
row nodes are ordered by the mean position of their parents to reduce edge
crossings. Cycles (which a model graph should not have) are broken by
placing the remaining nodes below everything else. Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence

Position = tuple[float, float]


def layer_of(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Row of each node: the length of the longest path from any input to it."""
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        if src in parents and dst in parents:
            children[src].append(dst)
            parents[dst].append(src)
    waiting = {n: len(parents[n]) for n in nodes}
    ready = [n for n in nodes if waiting[n] == 0]
    layers: dict[str, int] = {}
    while ready:
        node = ready.pop(0)
        layers[node] = max((layers[p] + 1 for p in parents[node] if p in layers), default=0)
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    bottom = max(layers.values(), default=-1) + 1
    return {n: layers.get(n, bottom) for n in nodes}


def layered_layout(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, Position]:
    """Place each node at (x, y): y is minus its row, x its slot centred on 0.

    Args:
        nodes: Node names, in the model's order (used to break ties).
        edges: (source, destination) pairs; unknown names are ignored.

    Returns:
        Every node's position; nodes in one row are 1 apart.
    """
    layers = layer_of(nodes, edges)
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        if src in parents and dst in parents:
            parents[dst].append(src)
    rows: dict[int, list[str]] = {}
    for node in nodes:
        rows.setdefault(layers[node], []).append(node)
    positions: dict[str, Position] = {}
    for row in sorted(rows):
        ordered = sorted(rows[row], key=lambda n: _barycentre(n, parents, positions, rows[row]))
        for slot, node in enumerate(ordered):
            positions[node] = (slot - (len(ordered) - 1) / 2.0, -float(row))
    return positions


def _barycentre(node: str, parents: dict[str, list[str]], placed: dict[str, Position], row: list[str]) -> float:
    xs = [placed[p][0] for p in parents[node] if p in placed]
    return sum(xs) / len(xs) if xs else float(row.index(node))
