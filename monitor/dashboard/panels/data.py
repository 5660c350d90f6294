"""Data: the input data at a glance, from the primary run's data summaries.

A run can send several summaries (``MonitorCallback`` sends images as
``train``, per-image statistics with labels, and ``train/pixels``, raw
pixel values); ``data-summary-select`` picks one, the first with labels by
default, and shows only when there is a choice.

Sources: ``data-feature`` (quad histogram of the feature chosen in
``data-feature-select``), ``data-labels`` (label counts as bars and as a
pie) and ``data-scatter`` (two chosen features of the sample, coloured by
label).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, FactorRange, Range1d
from bokeh.models.widgets import Select
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from monitor.dashboard.axes import class_labels_apart
from monitor.dashboard.batch import Batch
from monitor.dashboard.history import Parts, RunHistory
from monitor.dashboard.panels.base import LOADING_TEXT, Panel, empty_html, empty_state, floats
from monitor.dashboard.theme import Look
from monitor.wire import DataSummary

EMPTY_TEXT = (
    "No data summary yet: call <code>monitor.data_summary(x_train, y_train)</code> "
    "or pass <code>data=(x_train, y_train)</code> to <code>MonitorCallback</code>."
)
NO_LABELS_TEXT = (
    "No class labels in this summary: a regression target, or no labels sent "
    "(<code>monitor.data_summary(x, labels=y)</code>)."
)
NO_SAMPLE_TEXT = (
    "No sample rows in this summary to scatter: it was sent with "
    "<code>monitor.data_summary(x, sample_size=0)</code>, as <code>MonitorCallback</code> sends raw pixel values."
)
_PALETTE = list(Category10_10)


class DataPanel(Panel):
    """Feature histograms, label distribution and a feature scatter."""

    history = Parts(data=True)
    primary_only = True

    def __init__(self, look: Look) -> None:
        self._run: str | None = None
        self._summary: DataSummary | None = None
        self._summaries: dict[str, DataSummary] = {}
        self.summary = Select(title="Summary", options=[], value="", name="data-summary-select", width=220)
        self.summary.visible = False
        self.summary.on_change("value", lambda _a, _o, _n: self._pick())
        self.feature = Select(title="Feature", options=[], value="", name="data-feature-select", width=220)
        self.x, self.y = (Select(title=t, options=[], value="", name=f"data-{t}-select", width=160) for t in ("x", "y"))
        for select in (self.feature, self.x, self.y):
            select.on_change("value", lambda _a, _o, _n: self._draw())
        self.histogram = ColumnDataSource(
            data={"left": floats([]), "right": floats([]), "top": floats([])}, name="data-feature"
        )
        self.labels = ColumnDataSource(data=_label_columns([], floats([])), name="data-labels")
        self.scatter = ColumnDataSource(data={"x": floats([]), "y": floats([]), "label": []}, name="data-scatter")
        self._look = look
        self._empty = empty_state(look, "data-empty", EMPTY_TEXT)
        self._body = self._build(look)
        self.layout = column(self._empty, self._body, sizing_mode="stretch_width", name="data")

    def loading(self, on: bool) -> None:
        self._empty.text = empty_html(self._look, LOADING_TEXT if on else EMPTY_TEXT)

    def reset(self, runs: Sequence[str]) -> None:
        self._run = runs[0] if runs else None
        self._summary = None
        self._summaries.clear()
        self.summary.options, self.summary.value, self.summary.visible = [], "", False
        self._empty.visible, self._body.visible = True, False

    def load(self, history: RunHistory) -> None:
        if history.run == self._run and history.data:
            self._receive(history.data)

    def update(self, batch: Batch) -> None:
        mine = [d for d in batch.data if d.run == self._run]
        if mine:
            self._receive(mine)

    def _receive(self, summaries: Sequence[DataSummary]) -> None:
        for summary in summaries:
            self._summaries[summary.name] = summary
        names: list[Any] = list(self._summaries)
        if list(self.summary.options) != names:
            self.summary.options = names
            self.summary.visible = len(names) > 1
        if self.summary.value not in self._summaries:
            labelled = [n for n, s in self._summaries.items() if s.label_counts is not None]
            self.summary.value = (labelled or names)[0]  # triggers _pick
        else:
            self._pick()

    def _pick(self) -> None:
        if self.summary.value in self._summaries:
            self._set(self._summaries[self.summary.value])

    def _set(self, summary: DataSummary) -> None:
        self._summary = summary
        self._empty.visible, self._body.visible = False, True
        features: list[Any] = list(summary.feature_names)
        if list(self.feature.options) != features:
            self.feature.options = features
            self.feature.value = features[0] if features else ""
        columns: list[Any] = list(summary.sample_names)
        if list(self.x.options) != columns:
            self.x.options, self.y.options = columns, columns
            self.x.value = columns[0] if columns else ""
            self.y.value = columns[min(1, len(columns) - 1)] if columns else ""
        labels = list(summary.label_names)
        has_labels = summary.label_counts is not None and bool(labels)
        self._bars.visible = self._pie.visible = has_labels  # not two empty frames (a regression target)
        self._no_labels.visible = not has_labels
        self._label_range.factors = labels
        self.labels.data = _label_columns(
            labels, summary.label_counts if summary.label_counts is not None else floats([])
        )
        self._draw()

    def _draw(self) -> None:
        s = self._summary
        if s is None:
            return
        if self.feature.value in s.feature_names:
            i = s.feature_names.index(self.feature.value)
            self.histogram.data = {
                "left": floats(s.edges[i, :-1]),
                "right": floats(s.edges[i, 1:]),
                "top": floats(s.counts[i]),
            }
        has_sample = s.sample is not None and len(s.sample) > 0 and bool(s.sample_names)
        self._scatter.visible = self.x.visible = self.y.visible = has_sample
        self._no_sample.visible = not has_sample
        if s.sample is not None and self.x.value in s.sample_names and self.y.value in s.sample_names:
            xs, ys = s.sample[:, s.sample_names.index(self.x.value)], s.sample[:, s.sample_names.index(self.y.value)]
            labels = [str(int(v)) for v in s.sample_labels] if s.sample_labels is not None else ["0"] * len(xs)
            self.scatter.data = {"x": floats(xs), "y": floats(ys), "label": labels}
        elif len(self.scatter.data["x"]):  # not the last summary's points under this one's name
            self.scatter.data = {"x": floats([]), "y": floats([]), "label": []}

    def _build(self, look: Look) -> Any:
        h = round(260 * look.scale)
        hist = figure(
            **look.toolbar(),
            title="feature histogram",
            height=h,
            sizing_mode="stretch_width",
            tools="pan,wheel_zoom,reset",
        )
        hist.quad(left="left", right="right", top="top", bottom=0, source=self.histogram, alpha=0.8)
        self._label_range = FactorRange()
        bars = figure(
            **look.toolbar(),
            title="labels",
            x_range=self._label_range,
            height=h,
            sizing_mode="stretch_width",
            tools="hover",
            tooltips=[("label", "@label"), ("count", "@count")],
        )
        bars.vbar(x="label", top="count", width=0.8, color="color", source=self.labels)
        class_labels_apart(bars)
        self._bars = bars
        pie = figure(
            **look.toolbar(),
            title="label share",
            height=h,
            width=h,
            tools="hover",
            tooltips=[("label", "@label"), ("count", "@count")],
            x_range=Range1d(start=-1.1, end=1.1),
            y_range=Range1d(start=-1.1, end=1.1),
        )
        pie.wedge(x=0, y=0, radius=1.0, start_angle="start", end_angle="end", color="color", source=self.labels)
        pie.axis.visible, pie.grid.visible = False, False
        self._pie = pie
        self._no_labels = empty_state(look, "data-no-labels", NO_LABELS_TEXT)
        self._no_labels.visible = False
        self._no_labels.sizing_mode = "fixed"
        self._no_labels.width = round(260 * look.scale)
        scatter = figure(
            **look.toolbar(),
            title="sample: two features",
            height=h,
            sizing_mode="stretch_width",
            output_backend="webgl",
        )
        scatter.scatter(
            x="x",
            y="y",
            source=self.scatter,
            size=4,
            alpha=0.6,
            color=factor_cmap("label", _PALETTE, [str(i) for i in range(10)]),
        )
        self._scatter = scatter
        self._no_sample = empty_state(look, "data-no-sample", NO_SAMPLE_TEXT)
        self._no_sample.visible = False
        return column(
            row(self.summary, self.feature, self.x, self.y),
            row(hist, bars, pie, self._no_labels, scatter, self._no_sample, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
            visible=False,
        )


def _label_columns(labels: list[str], counts: Any) -> dict[str, Any]:
    values = floats(counts)
    total = float(values.sum()) or 1.0
    ends = np.cumsum(values) / total * 2 * math.pi
    starts = np.concatenate(([0.0], ends[:-1])) if len(ends) else floats([])
    colors = [_PALETTE[i % len(_PALETTE)] for i in range(len(labels))]
    return {"label": labels, "count": values, "start": floats(starts), "end": floats(ends), "color": colors}
