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
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
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
from bokeh.models.glyphs import Line
from bokeh.models.renderers import DataRenderer, GlyphRenderer
from bokeh.models.ui import UIElement
from bokeh.models.widgets import Div, RadioButtonGroup, Slider
from bokeh.plotting import figure

from monitor.dashboard.axes import steady_y_labels, step_ticks
from monitor.dashboard.batch import Batch
from monitor.dashboard.blanks import FigureStock, Make
from monitor.dashboard.grouping import chart_key, group_metrics, is_validation, series_key
from monitor.dashboard.history import RunHistory
from monitor.dashboard.panels.base import EQUAL_SHARE, LOADING_TEXT, Array, Panel, empty_html, empty_state, floats
from monitor.dashboard.patches import Adopt, frozen
from monitor.dashboard.smoothing import EmaState, ema
from monitor.dashboard.theme import Look, line_colors
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

NONSELECTION_ALPHA = 0.1
MUTED_ALPHA = 0.2
"""A line's opacity when others are selected, and when muted (``figure.line``'s)."""
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


@dataclass
class _Chart:
    """One chart on the page: its legend above its figure, and each line's two renderers (raw, smoothed)."""

    layout: LayoutDOM
    fig: figure
    legend: Div
    hover: HoverTool
    renderers: dict[tuple[str, str], tuple[GlyphRenderer[Any], GlyphRenderer[Any]]]


def _empty_columns() -> dict[str, Array]:
    return {"step": floats([]), "value": floats([]), "smooth": floats([]), "wall": floats([])}


class CurvesPanel(Panel):
    """Live line charts of every scalar of the runs shown."""

    def __init__(
        self, look: Look, label: Callable[[str], str], kiosk: bool = False, figures: FigureStock | None = None
    ) -> None:
        """``figures``: where charts' figures are taken from (``blank_chart``); None: each is made when needed."""
        self._look, self._label, self._kiosk, self._figures = look, label, kiosk, figures
        self._runs: list[str] = []
        self._lines: dict[tuple[str, str], _Line] = {}
        self._charts: dict[str, _Chart] = {}
        self._stale_charts: set[str] = set()
        """Charts whose lines, colours or labels changed since drawn: brought up to date in place."""
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
        self._stale_charts.clear()
        self._grid.children = []
        self._empty.visible = True

    def compare(self, runs: Sequence[str]) -> bool:
        """Keep the lines of the runs still shown; drop the others' and restyle every chart in place.

        The colours and labels follow the runs shown (one run: a colour per
        series; several: per run, labels naming the run), so every chart
        changes, but none is built again: a run added gets its lines when
        its history is drawn (``load``).
        """
        self._runs = list(runs)
        for key in [key for key in self._lines if key[0] not in runs]:
            del self._lines[key]
        self._stale_charts.update(self._charts)
        self._sync_layout()
        self._fit_flat()
        return True

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
        """Bring the stale charts up to date: new lines drawn, gone ones removed, colours and labels restyled.

        A chart is built once, when its first line comes (and again only
        when the axes change): a line added to a chart on the page costs the
        page two renderers' views, not a new figure's (about 40 models).
        """
        if not self._stale_charts:
            return
        with frozen(self.layout.document) as adopt:
            for key in self._stale_charts:
                lines = [line for line in self._lines.values() if chart_key(line.name) == key]
                if not lines:
                    self._charts.pop(key, None)
                elif key in self._charts:
                    self._restyle(self._charts[key], lines, adopt)
                else:
                    self._charts[key] = chart = self._chart(key, lines)
                    adopt(chart.layout)
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
            chart = self._charts.get(key)
            if chart is None or low != high:  # no data, or a real extent: BokehJS pads that itself
                continue
            span = FLAT_SPAN * abs(low) or 1.0
            y_range = chart.fig.y_range
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
            (self._charts[k].layout, i // columns, i % columns) for i, k in enumerate(order)
        ]
        if children != self._grid.children:
            self._grid.children = children
        self._empty.visible = not children

    def _rebuild_all(self) -> None:
        """Build every chart again (the axes changed), around the same sources."""
        self._stale_charts.update(self._charts)
        self._charts.clear()
        self._sync_layout()
        self._fit_flat()

    def _resmooth(self) -> None:
        for line in self._lines.values():
            smooth, line.state = ema(np.asarray(line.source.data["value"]), self.smoothing.value_throttled)
            line.source.data["smooth"] = smooth

    def _chart(self, key: str, lines: list[_Line]) -> _Chart:
        kind, make = blank_chart(self._look, by_time=self.x_axis.active == 1, log_y=self.y_scale.active == 1)
        fig = self._figures.take(kind, make) if self._figures is not None else make()
        fig.name = f"chart:{key}"
        title = fig.title if isinstance(fig.title, Title) else Title()
        title.text = PlainText(text=key)  # a metric's name as written: "$$x$$" is not TeX here
        fig.title = title
        if self.y_scale.active == 0:
            steady_y_labels(fig)  # after the name: the widest label is remembered per chart, by name
        colors = self._colors(lines)
        renderers = {(line.run, line.name): self._draw(line, colors) for line in lines}
        fig.renderers = [*fig.renderers, *(r for pair in renderers.values() for r in pair)]
        hover = HoverTool(
            renderers=[smooth for _, smooth in renderers.values()], tooltips=_TOOLTIPS, formatters={"@wall": "datetime"}
        )
        fig.add_tools(hover)
        legend = Div(text=self._legend_html(lines, colors), name=f"legend:{key}", disable_math=True)
        layout = column(legend, fig, sizing_mode=self._look.stretch)
        if self._look.fill:  # its legend's one line may not widen the chart's grid column beyond its share
            legend.sizing_mode = "stretch_width"
            legend.styles = {"min-width": "0", "overflow": "hidden"}
            layout.styles = {"min-width": "0", "overflow": "hidden"}
        return _Chart(layout, fig, legend, hover, renderers)

    def _restyle(self, chart: _Chart, lines: list[_Line], adopt: Adopt) -> None:
        """Bring a chart on the page to ``lines``: draw the new ones, remove the gone ones, recolour and relabel.

        Only what changed is set, so a chart that did not change sends nothing to the page.
        """
        keys = {(line.run, line.name) for line in lines}
        gone = [chart.renderers.pop(key) for key in list(chart.renderers) if key not in keys]
        if gone:
            dropped = {id(renderer) for pair in gone for renderer in pair}
            chart.fig.renderers = [r for r in chart.fig.renderers if id(r) not in dropped]
        colors = self._colors(lines)
        added: list[GlyphRenderer[Any]] = []
        for line in lines:
            key = (line.run, line.name)
            if key not in chart.renderers:
                chart.renderers[key] = pair = self._draw(line, colors)
                for renderer in pair:
                    adopt(renderer)
                added.extend(pair)
                continue
            color, _dash, label = self._style(line, colors)
            raw, smooth = chart.renderers[key]
            _recolor(raw, color)
            _recolor(smooth, color)
            if smooth.name != label:
                smooth.name = label
        if added:
            chart.fig.renderers = [*chart.fig.renderers, *added]
        hovered: list[DataRenderer] = [smooth for _, smooth in chart.renderers.values()]
        if chart.hover.renderers != hovered:
            chart.hover.renderers = hovered
        text = self._legend_html(lines, colors)
        if chart.legend.text != text:
            chart.legend.text = text

    def _colors(self, lines: list[_Line]) -> dict[tuple[str, str], str]:
        """Each line's colour: its run's when runs are compared, else its series' (a metric and its val_ share one).

        With one run shown, every tensor of a per-tensor chart (``weights_norm/...``) had the run's colour.
        """
        if len(self._runs) > 1:
            return {(line.run, line.name): _run_color(self._runs, line.run) for line in lines}
        keys = sorted({series_key(line.name) for line in lines})
        colors = dict(zip(keys, line_colors(len(keys)), strict=True))
        return {(line.run, line.name): colors[series_key(line.name)] for line in lines}

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

    def _draw(self, line: _Line, colors: dict[tuple[str, str], str]) -> tuple[GlyphRenderer[Any], GlyphRenderer[Any]]:
        """A line's two renderers, raw and smoothed (drawn above it), as ``figure.line`` makes them.

        Made here and put in a figure by the caller, all of a chart's at once:
        each change to a figure's renderers on the page is a message of its own.
        """
        color, dash, label = self._style(line, colors)
        x = "wall" if self.x_axis.active == 1 else "step"
        pair = []
        for y, width, alpha, name in (("value", 1, 0.25, None), ("smooth", 2, 1.0, label)):
            look: dict[str, Any] = {"x": x, "y": y, "line_color": color, "line_width": width, "line_dash": dash}
            pair.append(
                GlyphRenderer(
                    data_source=line.source,
                    glyph=Line(**look, line_alpha=alpha),
                    nonselection_glyph=Line(**look, line_alpha=NONSELECTION_ALPHA),
                    muted_glyph=Line(**look, line_alpha=MUTED_ALPHA),
                    name=name,
                )
            )
        return pair[0], pair[1]


def blank_chart(look: Look, *, by_time: bool = False, log_y: bool = False) -> tuple[Hashable, Make]:
    """The kind of a chart's blank figure and what makes one (see ``FigureStock``).

    A blank is the whole figure but its name, title, lines and y labels
    (``steady_y_labels`` keys them by the chart's name).
    """
    return ("curves", look.name, by_time, log_y), partial(_blank_figure, look, by_time, log_y)


def _blank_figure(look: Look, by_time: bool, log_y: bool) -> figure:
    fig = figure(
        **look.plot_size(260),
        x_axis_type="datetime" if by_time else "linear",
        y_axis_type="log" if log_y else "linear",
        tools="pan,wheel_zoom,box_zoom,reset,save", **look.toolbar(),
        # the canvas backend: WebGL without a GPU repaints far slower
    )  # fmt: skip
    fig.xaxis.axis_label = "time" if by_time else "step"
    if not by_time:
        fig.xaxis.formatter = step_ticks()
    return fig


def _recolor(renderer: GlyphRenderer[Any], color: str) -> None:
    """Set a line's colour in every state it is drawn in (normal, not selected, muted); only where it differs."""
    for glyph in (renderer.glyph, renderer.nonselection_glyph, renderer.muted_glyph):
        if isinstance(glyph, Line) and glyph.line_color != color:
            glyph.line_color = color


def _run_color(runs: list[str], run: str) -> str:
    return line_colors(len(runs))[runs.index(run)] if run in runs else "gray"


def _split(message: Scalars, chunks: dict[tuple[str, str], list[tuple[Array, Array, Array]]]) -> None:
    for index in np.unique(message.index).tolist():
        mask = message.index == index
        part = (message.steps[mask], message.values[mask], message.wall[mask])
        chunks.setdefault((message.run, message.names[index]), []).append(part)
