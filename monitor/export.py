"""Turning stored records into JSON-ready dicts and CSV text.

Shared by the REST API and ``labscreen export``. Non-finite floats become the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` in JSON (as protobuf's
JSON mapping does), so that standard JSON parsers accept every document.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from monitor.store.base import RunInfo, RunStore, ScalarSeries
from monitor.wire import DataSummary, Event, Graph, Histogram, Predictions

Array = np.ndarray[Any, Any]
EVERYTHING = 2**62
"""A read limit no run reaches: an export holds every record, not the latest few."""


def json_float(value: float) -> float | str:
    """A float, or its non-finite spelling as a string."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def json_array(array: Array | None) -> Any:
    """A nested list; float arrays with non-finite values spell them as strings."""
    if array is None:
        return None
    if array.dtype.kind != "f" or bool(np.isfinite(array).all()):
        return array.tolist()
    return np.vectorize(json_float, otypes=[object])(array).tolist()


def run_dict(run: RunInfo) -> dict[str, Any]:
    """A run as a JSON object."""
    return dataclasses.asdict(run)


def series_dict(series: ScalarSeries) -> dict[str, Any]:
    """A scalar series as ``{run, name, steps, wall, values}``."""
    return {
        "run": series.run,
        "name": series.name,
        "steps": json_array(series.steps),
        "wall": json_array(series.wall),
        "values": json_array(series.values),
    }


def histogram_dict(h: Histogram) -> dict[str, Any]:
    """A histogram record as a JSON object."""
    return {
        "name": h.name,
        "step": h.step,
        "wall": h.wall,
        "edges": json_array(h.edges),
        "counts": json_array(h.counts),
        "min": json_float(h.min),
        "max": json_float(h.max),
        "mean": json_float(h.mean),
        "std": json_float(h.std),
        "count": h.count,
        "nonfinite": h.nonfinite,
    }


def predictions_dict(p: Predictions) -> dict[str, Any]:
    """A predictions record as a JSON object."""
    return {
        "name": p.name,
        "step": p.step,
        "wall": p.wall,
        "task": p.task,
        "classes": list(p.classes),
        "y_true": json_array(p.y_true),
        "outputs": json_array(p.outputs),
        "embedding": json_array(p.embedding),
    }


def graph_dict(g: Graph) -> dict[str, Any]:
    """A model graph as ``{nodes: [...], edges: [[src, dst], ...]}``."""
    return {"nodes": [dataclasses.asdict(n) for n in g.nodes], "edges": [list(e) for e in g.edges]}


def data_dict(d: DataSummary) -> dict[str, Any]:
    """A data summary as a JSON object."""
    return {
        "name": d.name,
        "step": d.step,
        "wall": d.wall,
        "feature_names": list(d.feature_names),
        "edges": json_array(d.edges),
        "counts": json_array(d.counts),
        "label_names": list(d.label_names),
        "label_counts": json_array(d.label_counts),
        "sample_names": list(d.sample_names),
        "sample": json_array(d.sample),
        "sample_labels": json_array(d.sample_labels),
    }


def event_dict(e: Event) -> dict[str, Any]:
    """An event as a JSON object."""
    return {"step": e.step, "wall": e.wall, "level": e.level, "text": e.text}


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def series_rows(series: ScalarSeries) -> Iterable[tuple[str, int, float, float]]:
    """Rows ``(name, step, wall, value)`` of one series."""
    for step, wall, value in zip(series.steps.tolist(), series.wall.tolist(), series.values.tolist(), strict=True):
        yield series.name, step, wall, value


RUN_COLUMNS = ("id", "name", "project", "status", "started", "last_seen", "finished", "last_step")


def runs_csv(runs: Sequence[RunInfo]) -> str:
    """The run table as CSV."""
    return to_csv(RUN_COLUMNS, ([getattr(r, c) for c in RUN_COLUMNS] for r in runs))


def export_run(store: RunStore, run: str, fmt: str) -> str:
    """A whole run (metadata, every scalar series, events; JSON adds the rest) as text.

    Args:
        store: Where to read.
        run: Run id.
        fmt: ``"csv"`` (long-form scalar rows) or ``"json"``.

    Raises:
        NotFoundError: unknown run.
        ValueError: unknown format.
    """
    info = store.get_run(run)
    names = store.scalar_names(run)
    if fmt == "csv":
        rows = (row for name in names for row in series_rows(store.scalars(run, name)))
        return to_csv(("name", "step", "wall", "value"), rows)
    if fmt != "json":
        raise ValueError(f"format must be 'csv' or 'json', got {fmt!r}")
    import json

    graph = store.graph(run)
    document = {
        "run": run_dict(info),
        "scalars": {name: series_dict(store.scalars(run, name)) for name in names},
        "histograms": {n: [histogram_dict(h) for h in store.histograms(run, n)] for n in store.histogram_names(run)},
        "predictions": [predictions_dict(p) for p in store.predictions(run, limit=EVERYTHING)],
        "graph": graph_dict(graph) if graph is not None else None,
        "data": [data_dict(d) for d in store.data_summaries(run)],
        "events": [event_dict(e) for e in store.events(run, limit=EVERYTHING)],
    }
    return json.dumps(document, allow_nan=False)
