"""Training curves: one chart per metric group, one line per run and series.

Each (run, series) has its own ``ColumnDataSource`` named
``scalars:<run>:<series>`` with float64 columns ``step``, ``value``,
``smooth`` (EMA) and ``wall`` (milliseconds since the epoch), bounded by
``ROLLOVER``. A flush streams once per source. Changing the y scale or the
x axis rebuilds the figures around the same sources; changing the smoothing
re-sends only the ``smooth`` column. Smoothing follows the slider's
``value_throttled`` (set when the handle is let go), so points streamed while
the handle moves continue the average with the weight the line was drawn with.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    DataRange1d,
    GridBox,
    HoverTool,
    LayoutDOM,
    PlainText,
)
from bokeh.models.annotations import Title
from bokeh.models.renderers import DataRenderer, GlyphRenderer
from bokeh.models.ui import UIElement
from bokeh.models.widgets import Div, RadioButtonGroup, Slider
from bokeh.plotting import figure

from monitor.dashboard.axes import steady_y_labels, step_ticks
from monitor.dashboard.batch import Batch
from monitor.dashboard.grouping import chart_key, group_metrics, is_validation, series_key
from monitor.dashboard.history import RunHistory
from monitor.dashboard.panels.base import EQUAL_SHARE, LOADING_TEXT, Array, Panel, empty_html, empty_state, floats
from monitor.dashboard.smoothing import EmaState, ema
from monitor.dashboard.theme import RUN_COLORS, SERIES_COLORS, Look
from monitor.wire import Scalars

ROLLOVER = 10_000
"""Most points a line keeps (history is decimated to fewer)."""
EMPTY_TEXT = (
    "No training curves yet: log scalars with <code>monitor.log({'loss': loss})</code> "
    "or add <code>MonitorCallback</code> to <code>model.fit(callbacks=[...])</code>."
)
_TOOLTIPS = [("series", "$name"), ("step", "@step{0,0}"), ("value", "@value{0.[0000]}"), ("time", "@wall{%F %T}")]


LEGEND_LINES = 8
"""A chart comparing runs with more lines than this lists its runs, not every (run, series): hover names a line."""
KIOSK_CHARTS_PER_PAGE = 6
"""Most charts the lab screen shows at once; more are shown on further pages in turn."""

FLAT_SPAN = 0.2
"""A chart whose lines all hold one value ``c`` spans ``c`` +- ``FLAT_SPAN * |c| / 2`` (1 around 0)."""


@dataclass
class _Line:
    run: str
    name: str
    source: ColumnDataSource
    state: EmaState
    low: float = math.inf
    high: float = -math.inf

    def note_extent(self) -> None:
        """Note the extent of the finite values the line holds now (after a load, or see ``note_new``)."""
        values = np.asarray(self.source.data["value"])
        finite = values[np.isfinite(values)]
        self.low, self.high = (float(finite.min()), float(finite.max())) if finite.size else (math.inf, -math.inf)

    def note_new(self, values: Array) -> None:
        """Note the extent after streaming ``values``, scanning the whole line only when it may have gone flat.

        Only flatness matters (``CurvesPanel._fit_flat``). New values that
        vary keep the line varying; new values equal to a flat line's keep it
        flat. Only one value arriving on a varying line needs a look at what
        the line still holds (its varied points may have rolled off): on the
        IOLoop, per session, most flushes scan nothing.
        """
        finite = values[np.isfinite(values)]
        if not finite.size:
            return
        low, high = float(finite.min()), float(finite.max())
        if low != high:
            self.low, self.high = min(self.low, low), max(self.high, high)
        elif not self.low == self.high == low:
            self.note_extent()


def _empty_columns() -> dict[str, Array]:
    return {"step": floats([]), "value": floats([]), "smooth": floats([]), "wall": floats([])}


class CurvesPanel(Panel):
    """Live line charts of every scalar of the runs shown."""

    def __init__(self, look: Look, label: Callable[[str], str], kiosk: bool = False) -> None:
        self._look, self._label, self._kiosk = look, label, kiosk
        self._runs: list[str] = []
        self._lines: dict[tuple[str, str], _Line] = {}
        self._charts: dict[str, LayoutDOM] = {}
        self._figures: dict[str, figure] = {}
        self._stale_charts: set[str] = set()
        self.smoothing = Slider(
            title="Smoothing", start=0.0, end=0.99, step=0.01, value=0.6, width=220, name="curves-smoothing"
        )
        self.y_scale = RadioButtonGroup(labels=["linear", "log"], active=0, name="curves-y-scale")
        self.x_axis = RadioButtonGroup(labels=["step", "time"], active=0, name="curves-x-axis")
        self.smoothing.on_change("value_throttled", lambda _a, _o, _n: self._resmooth())
        self.y_scale.on_change("active", lambda _a, _o, _n: self._rebuild_all())
        self.x_axis.on_change("active", lambda _a, _o, _n: self._rebuild_all())
        self._empty = empty_state(look, "curves-empty", EMPTY_TEXT)
        # Equal columns whatever the content: sized by it, a chart with a long legend (33 gradient norms)
        # took 1,257 px of 1,366 and left the loss chart 109.
        self._grid = GridBox(children=[], cols=EQUAL_SHARE, sizing_mode=look.stretch, name="curves-grid")
        self._page = 0
        self._portrait = False
        controls = row(self.smoothing, self.y_scale, self.x_axis, visible=not kiosk)
        self.layout = column(controls, self._empty, self._grid, sizing_mode=look.stretch, name="curves")

    def loading(self, on: bool) -> None:
        self._empty.text = empty_html(self._look, LOADING_TEXT if on else EMPTY_TEXT)

    def reset(self, runs: Sequence[str]) -> None:
        self._runs = list(runs)
        self._lines.clear()
        self._charts.clear()
        self._figures.clear()
        self._grid.children = []
        self._empty.visible = True

    def load(self, history: RunHistory) -> None:
        for name, series in history.scalars.items():
            line = self._line(history.run, name)
            smooth, line.state = ema(series.values, self.smoothing.value_throttled)
            line.source.data = {
                "step": floats(series.steps), "value": floats(series.values), "smooth": smooth,
                "wall": floats(series.wall) * 1000.0,
            }  # fmt: skip
        for line in self._lines.values():
            if line.run == history.run:
                line.note_extent()
        self._sync_layout()
        self._fit_flat()

    def update(self, batch: Batch) -> None:
        chunks: dict[tuple[str, str], list[tuple[Array, Array, Array]]] = {}
        for message in batch.scalars:
            if message.run in self._runs:
                _split(message, chunks)
        for key, parts in chunks.items():
            self._stream(self._line(*key), parts)
        self._sync_layout()
        if chunks:
            self._fit_flat()

    def _stream(self, line: _Line, parts: list[tuple[Array, Array, Array]]) -> None:
        steps, values, wall = (np.concatenate([p[i] for p in parts]) for i in range(3))
        order = np.argsort(steps, kind="stable")
        smooth, line.state = ema(values[order], self.smoothing.value_throttled, line.state)
        columns: dict[str, Any] = {
            "step": floats(steps[order]),
            "value": floats(values[order]),
            "smooth": smooth,
            "wall": floats(wall[order]) * 1000.0,
        }
        line.source.stream(columns, rollover=ROLLOVER)
        line.note_new(values)

    def _line(self, run: str, name: str) -> _Line:
        key = (run, name)
        if key not in self._lines:
            source = ColumnDataSource(data=_empty_columns(), name=f"scalars:{run}:{name}")
            self._lines[key] = _Line(run, name, source, EmaState())
            if chart_key(name) in group_metrics([name]):
                self._stale_charts.add(chart_key(name))
        return self._lines[key]

    def _sync_layout(self) -> None:
        if not self._stale_charts:
            return
        for key in self._stale_charts:
            self._charts[key] = self._figure(key)
        self._stale_charts.clear()
        self._place_charts()

    def _fit_flat(self) -> None:
        """Give each chart whose lines all hold one value a y span around that value.

        BokehJS spans a range of no extent by ``default_span`` (2), so a
        constant learning rate of 0.001 drew a flat line across -1 to 1.
        """
        if self.y_scale.active != 0:
            return
        extents: dict[str, tuple[float, float]] = {}
        for line in self._lines.values():
            low, high = extents.get(chart_key(line.name), (math.inf, -math.inf))
            extents[chart_key(line.name)] = (min(low, line.low), max(high, line.high))
        for key, (low, high) in extents.items():
            fig = self._figures.get(key)
            if fig is None or low != high:  # no data, or a real extent: BokehJS pads that itself
                continue
            span = FLAT_SPAN * abs(low) or 1.0
            y_range = fig.y_range
            if isinstance(y_range, DataRange1d) and y_range.default_span != span:
                y_range.default_span = span

    def pages(self) -> int:
        """How many pages the lab screen shows the charts on (one on the desk, which scrolls)."""
        charts = len(self._charts)
        return max(1, math.ceil(charts / KIOSK_CHARTS_PER_PAGE)) if self._kiosk else 1

    def set_portrait(self, portrait: bool) -> None:
        """Lay the lab screen's charts out for a portrait window (one column) or a landscape one."""
        if portrait != self._portrait:
            self._portrait = portrait
            self._place_charts()

    def show_page(self, page: int) -> None:
        """Show the charts of ``page`` (0-based, of ``pages()``; clamped): the lab screen's rotation."""
        self._page = page
        self._place_charts()

    def _place_charts(self) -> None:
        order = [k for k in group_metrics(name for _, name in self._lines) if k in self._charts]
        if self._kiosk:  # pages of even size: 8 charts are two pages of four, not six and two
            pages = self.pages()
            self._page = min(self._page, pages - 1)
            size = math.ceil(len(order) / pages)
            order = order[self._page * size : (self._page + 1) * size]
            columns = 1 if len(order) < 2 or self._portrait else 2 if len(order) <= 4 else 3
        else:
            columns = 2 if len(order) > 1 else 1
        children: list[tuple[UIElement, int, int] | tuple[UIElement, int, int, int, int]] = [
            (self._charts[k], i // columns, i % columns) for i, k in enumerate(order)
        ]
        if children != self._grid.children:
            self._grid.children = children
        self._empty.visible = not children

    def _rebuild_all(self) -> None:
        self._stale_charts.update(self._charts)
        self._sync_layout()
        self._fit_flat()

    def _resmooth(self) -> None:
        for line in self._lines.values():
            smooth, line.state = ema(np.asarray(line.source.data["value"]), self.smoothing.value_throttled)
            line.source.data["smooth"] = smooth

    def _figure(self, key: str) -> LayoutDOM:
        by_time = self.x_axis.active == 1
        fig = figure(
            title=Title(text=PlainText(text=key)),  # a metric's name as written: "$$x$$" is not TeX here
            **self._look.plot_size(260), name=f"chart:{key}",
            x_axis_type="datetime" if by_time else "linear",
            y_axis_type="log" if self.y_scale.active == 1 else "linear",
            tools="pan,wheel_zoom,box_zoom,reset,save",  # canvas: WebGL without a GPU repaints far slower
        )  # fmt: skip
        fig.xaxis.axis_label = "time" if by_time else "step"
        if not by_time:
            fig.xaxis.formatter = step_ticks()
        if self.y_scale.active == 0:
            steady_y_labels(fig)
        x = "wall" if by_time else "step"
        lines = [line for line in self._lines.values() if chart_key(line.name) == key]
        colors = self._colors(lines)
        renderers: list[DataRenderer] = [self._draw(fig, line, x, colors) for line in lines]
        fig.add_tools(HoverTool(renderers=renderers, tooltips=_TOOLTIPS, formatters={"@wall": "datetime"}))
        legend = Div(text=self._legend_html(lines, colors), name=f"legend:{key}", disable_math=True)
        self._figures[key] = fig
        chart = column(legend, fig, sizing_mode=self._look.stretch)
        if self._look.fill:  # its legend's one line may not widen the chart's grid column beyond its share
            legend.sizing_mode = "stretch_width"
            legend.styles = {"min-width": "0", "overflow": "hidden"}
            chart.styles = {"min-width": "0", "overflow": "hidden"}
        return chart

    def _colors(self, lines: list[_Line]) -> dict[tuple[str, str], str]:
        """Each line's colour: its run's when runs are compared, else its series' (a metric and its val_ share one).

        With one run shown, every tensor of a per-tensor chart (``weights_norm/...``) had the run's colour.
        """
        if len(self._runs) > 1:
            return {(line.run, line.name): _run_color(self._runs, line.run) for line in lines}
        keys = sorted({series_key(line.name) for line in lines})
        return {
            (line.run, line.name): SERIES_COLORS[keys.index(series_key(line.name)) % len(SERIES_COLORS)]
            for line in lines
        }

    def _style(self, line: _Line, colors: dict[tuple[str, str], str]) -> tuple[str, str, str]:
        color = colors.get((line.run, line.name), "gray")
        dash = "dashed" if is_validation(line.name) else "solid"
        label = line.name if len(self._runs) < 2 else f"{self._label(line.run)} · {line.name}"
        return color, dash, label

    def _legend_html(self, lines: list[_Line], colors: dict[tuple[str, str], str]) -> str:
        """The chart's legend as HTML beside the plot.

        Not Bokeh's ``Legend``: BokehJS 3.9 rebuilds a legend's DOM whenever
        any of its renderers' sources streams, which at a few updates a second
        per chart kept the page busy restyling.
        """
        items = []
        styles = sorted((self._style(line, colors) for line in lines), key=lambda style: style[2])
        if len(self._runs) > 1 and len(lines) > LEGEND_LINES:  # compared runs of many series: name the runs
            counts = Counter(line.run for line in lines)
            styles = [
                (_run_color(self._runs, run), "solid", f"{self._label(run)} ({counts[run]} series)")
                for run in self._runs
                if counts[run]
            ]
        for color, dash, label in styles:
            swatch = f"display:inline-block;width:22px;border-top:3px {dash} {color};margin:0 6px 3px 0"
            item = f"<span style='{swatch}'></span>{html.escape(label)}"
            # On the desk each entry wraps within the chart's width; the lab screen's one line ends in "…".
            layout = "white-space:nowrap" if self._look.fill else "display:inline-block;max-width:100%"
            items.append(f"<span style='margin-right:16px;{layout}'>{item}</span>")
        style = f"font-size:{self._look.px(12)};color:{self._look.text};overflow-wrap:anywhere"  # long names break
        if self._look.fill:  # one line, cut at the edge: the chart below keeps the window's height
            style += ";white-space:nowrap;overflow:hidden;text-overflow:ellipsis"
        return f"<div style='{style}'>{''.join(items)}</div>"

    def _draw(self, fig: figure, line: _Line, x: str, colors: dict[tuple[str, str], str]) -> GlyphRenderer[Any]:
        color, dash, label = self._style(line, colors)
        fig.line(x, "value", source=line.source, color=color, alpha=0.25, line_dash=dash)
        return fig.line(x, "smooth", source=line.source, color=color, line_width=2, line_dash=dash, name=label)


def _run_color(runs: list[str], run: str) -> str:
    return RUN_COLORS[runs.index(run) % len(RUN_COLORS)] if run in runs else "gray"


def _split(message: Scalars, chunks: dict[tuple[str, str], list[tuple[Array, Array, Array]]]) -> None:
    for index in np.unique(message.index).tolist():
        mask = message.index == index
        part = (message.steps[mask], message.values[mask], message.wall[mask])
        chunks.setdefault((message.run, message.names[index]), []).append(part)
