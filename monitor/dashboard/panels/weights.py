"""Weights: the current histogram of a chosen tensor and its distribution over time.

Sources: ``weights-current`` (quad: left, right, top; patched in place when
the bins keep their count), ``weights-bands`` (step and the percentile
columns of ``percentiles.BAND_COLUMNS``; streamed with rollover),
``weights-heatmap`` (one step x bin ``image``, resampled onto a common grid,
a live histogram patched in as one column: see ``heatmap.StepHeatmap``) and
``weights-norm`` / ``weights-ratio`` (step, value: the chosen tensor's norm
and update ratio, when sent; see ``tensor_scalars``).
Every tensor's recent histograms and norms are kept in memory so switching
the layer picker needs no store read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.layouts import column
from bokeh.models import BasicTicker, ColumnDataSource, DataRange1d, LinearAxis, LinearColorMapper
from bokeh.models.widgets import Select
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from monitor.dashboard.axes import step_ticks, value_ticks
from monitor.dashboard.batch import Batch
from monitor.dashboard.heatmap import StepHeatmap
from monitor.dashboard.history import Parts, RunHistory
from monitor.dashboard.panels.base import LOADING_TEXT, Panel, Strip, empty_html, empty_state, floats
from monitor.dashboard.percentiles import BAND_COLUMNS, histogram_percentiles
from monitor.dashboard.theme import Look
from monitor.wire import Histogram, Scalars

KEEP = 200
"""Histograms kept per tensor (and drawn when the heatmap is drawn whole)."""
HEATMAP_COLUMNS = KEEP + KEEP // 4
"""Heatmap columns: a whole draw fills ``KEEP``; the other ``KEEP // 4`` take live histograms as patches."""
BAND_ROLLOVER = 2000
GRID_BINS = 64
NORM_KEEP = 2000
"""Norm and update-ratio points kept per tensor."""
_NORM_AND_RATIO_TITLE = "norm (solid, left) and update ratio ||w_t - w_t-k|| / ||w_t|| (dashed, right)"
GRADIENTS_PREFIX = "gradients/"
"""How ``MonitorCallback(gradients=True)`` names its gradient histograms."""
_NORM_PREFIXES = ("weights_norm/", "gradients_norm/", "norm/", "update_ratio/")
EMPTY_TEXT = (
    "No weight histograms yet: send them with <code>monitor.histogram('dense/kernel', weights)</code> "
    "or <code>MonitorCallback</code>, which sends them every <code>histograms_every=100</code> batches."
)


def _tensor_order(name: str) -> tuple[bool, str]:
    """Weights before gradients (the tab opens on a weight, not on ``gradients/...``), then by name."""
    return name.startswith(GRADIENTS_PREFIX), name


class WeightsPanel(Panel):
    """Histograms of the primary run's tensors, live."""

    history = Parts(scalars=_NORM_PREFIXES, histograms=True)
    primary_only = True

    def __init__(self, look: Look) -> None:
        self._run: str | None = None
        self._kept: dict[str, deque[Histogram]] = {}
        self._norms: dict[str, deque[tuple[float, float]]] = {}
        self.layer = Select(title="Tensor", options=[], value="", name="weights-layer", width=320)
        self.layer.visible = not look.fill  # the lab screen shows each tensor in turn (``advance``)
        self.layer.on_change("value", lambda _a, _o, _n: self._redraw())
        self.current = ColumnDataSource(data=_bins([], []), name="weights-current")
        self.bands = ColumnDataSource(data={c: floats([]) for c in ("step", *BAND_COLUMNS)}, name="weights-bands")
        self.heatmap = ColumnDataSource(name="weights-heatmap")
        self._heat = StepHeatmap(self.heatmap, GRID_BINS, KEEP, HEATMAP_COLUMNS)
        self.norm = ColumnDataSource(data=_points([]), name="weights-norm")
        self.ratio = ColumnDataSource(data=_points([]), name="weights-ratio")
        self._look = look
        self._empty = empty_state(look, "weights-empty", EMPTY_TEXT)
        # One step axis for the bands and the heatmap, which hold the same recent histograms. Not for the
        # norms below, which go back to the run's start: on one axis the histograms became a sliver.
        self._steps = DataRange1d()
        self._norm_figure = self._norms_figure(look)
        figures = [self._current_figure(look), self._bands_figure(look), self._heatmap_figure(look)]
        self._figures = Strip(look, figures, "weights-strip")
        body = [self.layer, self._figures.layout, self._norm_figure]
        self._body = column(*body, sizing_mode=look.stretch, visible=False)
        self.layout = column(self._empty, self._body, sizing_mode=look.stretch, name="weights")

    def loading(self, on: bool) -> None:
        self._empty.text = empty_html(self._look, LOADING_TEXT if on else EMPTY_TEXT)

    def reset(self, runs: Sequence[str]) -> None:
        self._run = runs[0] if runs else None
        self._kept.clear()
        self._norms.clear()
        self.layer.options, self.layer.value = [], ""
        self._redraw()

    def load(self, history: RunHistory) -> None:
        if history.run != self._run:
            return
        for name, series in history.scalars.items():
            if name.startswith(_NORM_PREFIXES):
                points = zip(series.steps.tolist(), series.values.tolist(), strict=True)
                self._norms.setdefault(name, deque(maxlen=NORM_KEEP)).extend(points)
        self._add([h for hs in history.histograms.values() for h in hs], live=False)
        self._show_norms()

    def update(self, batch: Batch) -> None:
        fresh = self._add_norms([m for m in batch.scalars if m.run == self._run])
        self._add([h for h in batch.histograms if h.run == self._run], live=True)
        norm_name, ratio_name = tensor_scalars(self.layer.value)
        for name, source in ((norm_name, self.norm), (ratio_name, self.ratio)):
            if name in fresh:
                source.stream(_points(fresh[name]), rollover=NORM_KEEP)
        if fresh.keys() & {norm_name, ratio_name}:
            self._norm_figure.visible = True
        if ratio_name in fresh:
            self._title_norms(has_ratio=True)

    def has_data(self) -> bool:
        return bool(self._kept)

    def set_portrait(self, portrait: bool) -> None:
        self._figures.set_portrait(portrait)

    def advance(self) -> None:
        """Choose the next tensor (after the last, the first): the lab screen shows each in turn."""
        names = list(self.layer.options)
        if names and isinstance(self.layer.value, str):
            position = names.index(self.layer.value) if self.layer.value in names else -1
            self.layer.value = names[(position + 1) % len(names)]

    def caption(self) -> str:
        return self.layer.value if isinstance(self.layer.value, str) else ""

    def _add_norms(self, messages: list[Scalars]) -> dict[str, list[tuple[float, float]]]:
        fresh: dict[str, list[tuple[float, float]]] = {}
        for message in messages:
            for index, name in enumerate(message.names):
                if not name.startswith(_NORM_PREFIXES):
                    continue
                mask = message.index == index
                points = list(zip(message.steps[mask].tolist(), message.values[mask].tolist(), strict=True))
                self._norms.setdefault(name, deque(maxlen=NORM_KEEP)).extend(points)
                fresh.setdefault(name, []).extend(points)
        return fresh

    def _show_norms(self) -> None:
        norm_name, ratio_name = tensor_scalars(self.layer.value)
        norm, ratio = self._norms.get(norm_name, ()), self._norms.get(ratio_name, ())
        self.norm.data, self.ratio.data = _points(norm), _points(ratio)
        self._norm_figure.visible = bool(norm or ratio)
        self._title_norms(has_ratio=bool(ratio))

    def _title_norms(self, has_ratio: bool) -> None:
        """Name only what the chart draws: a gradient has a norm and no update ratio."""
        title = _NORM_AND_RATIO_TITLE if has_ratio else "norm"
        current = self._norm_figure.title
        if current is not None and not isinstance(current, str) and current.text != title:
            current.text = title

    def _add(self, histograms: list[Histogram], live: bool) -> None:
        if not histograms:
            return
        for histogram in histograms:
            self._kept.setdefault(histogram.name, deque(maxlen=KEEP)).append(histogram)
        names: list[Any] = sorted(self._kept, key=_tensor_order)
        if list(self.layer.options) != names:
            self.layer.options = names
        chosen = [h for h in histograms if h.name == self.layer.value]
        if not self.layer.value:
            self.layer.value = names[0]  # triggers a full redraw
        elif chosen and live:
            self._show_current(chosen[-1])
            self.bands.stream(_band_columns(chosen), rollover=BAND_ROLLOVER)
            kept = self._kept[self.layer.value]
            if len(chosen) == 1:
                self._heat.add(chosen[0], kept)
            else:
                self._heat.draw(kept)
        elif chosen:
            self._redraw()

    def _redraw(self) -> None:
        kept = list(self._kept.get(self.layer.value, ()))
        self._body.visible = bool(kept)
        self._empty.visible = not kept
        self.bands.data = _band_columns(kept)
        if kept:
            self._show_current(kept[-1])
        else:
            self.current.data = _bins([], [])
        self._heat.draw(kept)
        self._show_norms()

    def _show_current(self, histogram: Histogram) -> None:
        data = _bins(histogram.edges, histogram.counts)
        n = len(histogram.counts)
        if len(self.current.data["top"]) == n:
            self.current.patch({k: [(slice(0, n), v)] for k, v in data.items()})
        else:
            self.current.data = data

    def _current_figure(self, look: Look) -> figure:
        fig = figure(
            **look.toolbar(),
            title="current histogram",
            **look.plot_size(260),
            tools="pan,wheel_zoom,reset,hover",
            name="weights-current-figure",
        )
        fig.quad(left="left", right="right", top="top", bottom=0, source=self.current, alpha=0.8)
        fig.xaxis.ticker = BasicTicker(desired_num_ticks=4)  # a few: a narrow chart, and labels like "-0.0010"
        fig.xaxis.formatter = value_ticks()
        return fig

    def _bands_figure(self, look: Look) -> figure:
        fig = figure(
            **look.toolbar(),
            title="distribution over steps",
            **look.plot_size(260),
            x_range=self._steps,
            tools="pan,wheel_zoom,reset",
        )
        fig.xaxis.formatter, fig.yaxis.formatter = step_ticks(), value_ticks()
        for (low, high), alpha in zip((("p0", "p100"), ("p7", "p93"), ("p16", "p84")), (0.15, 0.25, 0.35), strict=True):
            fig.varea(x="step", y1=low, y2=high, source=self.bands, alpha=alpha)
        median = fig.line(x="step", y="p50", source=self.bands, line_width=2)
        self._steps.renderers = [median]  # not the heatmap's unfilled columns, right of its last step
        return fig

    def _heatmap_figure(self, look: Look) -> figure:
        fig = figure(
            **look.toolbar(),
            title="histogram over steps",
            **look.plot_size(260),
            x_range=self._steps,
            tools="pan,wheel_zoom,reset",
        )
        fig.xaxis.formatter, fig.yaxis.formatter = step_ticks(), value_ticks()
        mapper = LinearColorMapper(palette=Viridis256, nan_color=(0, 0, 0, 0))  # unfilled columns: none
        fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.heatmap, color_mapper=mapper)  # type: ignore[call-arg]
        return fig

    def _norms_figure(self, look: Look) -> figure:
        fig = figure(
            **look.toolbar(),
            title=_NORM_AND_RATIO_TITLE,
            **look.plot_size(220),
            tools="pan,wheel_zoom,reset,hover",
            name="weights-norms",
            visible=False,
        )
        norm = fig.line(x="step", y="value", source=self.norm, line_width=2)
        fig.y_range = DataRange1d(renderers=[norm])
        ratio_range = DataRange1d()
        fig.extra_y_ranges = {"ratio": ratio_range}
        ratio = fig.line(
            x="step", y="value", source=self.ratio, y_range_name="ratio", line_width=2, color="#d62728",
            line_dash="dashed",
        )  # fmt: skip
        ratio_range.renderers = [ratio]
        fig.add_layout(LinearAxis(y_range_name="ratio", axis_label="update ratio"), "right")
        fig.yaxis[0].axis_label = "norm"
        fig.yaxis.formatter = value_ticks()  # both y axes
        fig.xaxis.formatter = step_ticks()
        return fig


def tensor_scalars(histogram: str) -> tuple[str, str]:
    """The scalar series that hold a tensor's norm and update ratio.

    ``MonitorCallback`` names its histograms ``weights/<var>`` and
    ``gradients/<var>`` and their norms ``weights_norm/<var>``,
    ``gradients_norm/<var>`` and ``update_ratio/<var>``; for any other tensor
    ``<name>`` a producer sends ``norm/<name>`` and ``update_ratio/<name>``.
    """
    kind, sep, rest = histogram.partition("/")
    if sep and rest and kind in ("weights", "gradients"):
        return f"{kind}_norm/{rest}", f"update_ratio/{rest}" if kind == "weights" else ""
    return f"norm/{histogram}", f"update_ratio/{histogram}"


def _points(points: Any) -> dict[str, Any]:
    pairs = np.array(list(points), dtype=np.float64).reshape(-1, 2)
    return {"step": pairs[:, 0].copy(), "value": pairs[:, 1].copy()}


def _bins(edges: Any, counts: Any) -> dict[str, Any]:
    e = floats(edges)
    return {"left": e[:-1] if len(e) else floats([]), "right": e[1:], "top": floats(counts)}


def _band_columns(histograms: list[Histogram]) -> dict[str, Any]:
    rows = np.array([histogram_percentiles(h.edges, h.counts) for h in histograms]).reshape(
        len(histograms), len(BAND_COLUMNS)
    )
    columns: dict[str, Any] = {"step": floats([h.step for h in histograms])}
    columns.update({name: floats(rows[:, i]) for i, name in enumerate(BAND_COLUMNS)})
    return columns
