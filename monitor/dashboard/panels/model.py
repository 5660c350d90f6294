"""Model: the network's structure as a layered graph, and its parameter counts.

Sources: ``model-nodes`` (x, y, name, type, shape, params per layer; drawn
as boxes showing name, type, output shape and parameters, with hover), ``model-edges`` (segments between layers)
and ``model-params`` (the parameter table). The layout comes from
``dag.layered_layout``; the graph is sent once per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import DataTable, Div, NumberFormatter, TableColumn
from bokeh.plotting import figure

from monitor.dashboard.batch import Batch
from monitor.dashboard.dag import layered_layout
from monitor.dashboard.history import Parts, RunHistory
from monitor.dashboard.panels.base import LOADING_TEXT, Panel, empty_html, empty_state, floats
from monitor.dashboard.theme import Look
from monitor.wire import Graph

EMPTY_TEXT = (
    "No model graph yet: <code>MonitorCallback</code> sends it when training starts, "
    "or call <code>monitor.graph(nodes, edges)</code>."
)
_NODE_COLUMNS = ("x", "y", "name", "type", "shape", "params", "trainable", "detail")


class ModelPanel(Panel):
    """The primary run's model graph and parameter table."""

    history = Parts(graph=True)
    primary_only = True

    def __init__(self, look: Look) -> None:
        self._run: str | None = None
        self.nodes = ColumnDataSource(data={c: [] for c in _NODE_COLUMNS}, name="model-nodes")
        self.edges = ColumnDataSource(data={c: floats([]) for c in ("x0", "y0", "x1", "y1")}, name="model-edges")
        self.total = Div(text="", name="model-total", disable_math=True)
        self._look = look
        self._empty = empty_state(look, "model-empty", EMPTY_TEXT)
        self._graph = self._graph_figure(look)
        table = DataTable(
            source=self.nodes,
            columns=_table_columns(),
            height=round(420 * look.scale),
            width=520,
            index_position=None,
            reorderable=False,
            name="model-params",
        )
        self._body = row(self._graph, column(self.total, table), sizing_mode="stretch_width", visible=False)
        self.layout = column(self._empty, self._body, sizing_mode="stretch_width", name="model")

    def loading(self, on: bool) -> None:
        self._empty.text = empty_html(self._look, LOADING_TEXT if on else EMPTY_TEXT)

    def reset(self, runs: Sequence[str]) -> None:
        self._run = runs[0] if runs else None
        self._empty.visible, self._body.visible = True, False

    def load(self, history: RunHistory) -> None:
        if history.run == self._run and history.graph is not None:
            self._draw(history.graph)

    def update(self, batch: Batch) -> None:
        mine = [g for g in batch.graphs if g.run == self._run]
        if mine:
            self._draw(mine[-1])

    def _draw(self, graph: Graph) -> None:
        names = [n.name for n in graph.nodes]
        positions = layered_layout(names, graph.edges)
        self.nodes.data = {
            "x": floats([positions[n][0] for n in names]), "y": floats([positions[n][1] for n in names]),
            "name": names, "type": [n.type for n in graph.nodes], "shape": [n.output_shape for n in graph.nodes],
            "params": floats([n.params for n in graph.nodes]), "trainable": floats([n.trainable for n in graph.nodes]),
            "detail": [_detail(n.output_shape, n.params) for n in graph.nodes],
        }  # fmt: skip
        pairs = [(positions[s], positions[d]) for s, d in graph.edges]
        self.edges.data = {
            "x0": floats([a[0] for a, _ in pairs]), "y0": floats([a[1] for a, _ in pairs]),
            "x1": floats([b[0] for _, b in pairs]), "y1": floats([b[1] for _, b in pairs]),
        }  # fmt: skip
        total, trainable = sum(n.params for n in graph.nodes), sum(n.trainable for n in graph.nodes)
        self.total.text = f"<b>{len(names)}</b> layers · <b>{total:,}</b> parameters ({trainable:,} trainable)"
        self._graph.height = max(300, 90 * (1 + int(-min((p[1] for p in positions.values()), default=0))))
        self._empty.visible, self._body.visible = False, True

    def _graph_figure(self, look: Look) -> Any:
        tooltips = [("layer", "@name"), ("type", "@type"), ("output", "@shape"), ("parameters", "@params{0,0}")]
        fig = figure(
            **look.toolbar(),
            title="network structure",
            height=400,
            sizing_mode="stretch_width",
            tools="pan,wheel_zoom,reset",
            tooltips=tooltips,
        )
        fig.segment(x0="x0", y0="y0", x1="x1", y1="y1", source=self.edges, line_color=look.muted, line_width=2)
        fig.rect(x="x", y="y", width=0.85, height=0.7, source=self.nodes, fill_color="#9ecae1", line_color="#3182bd")
        lines = (("name", 11, "#08306b", -1), ("type", 10, "#08519c", 0), ("detail", 10, "#08519c", 1))
        for field, size, color, offset in lines:  # name, type, then output shape and parameters
            fig.text(
                x="x",
                y="y",
                text=field,
                source=self.nodes,
                text_align="center",
                text_baseline="middle",
                y_offset=round(offset * 15 * look.scale),
                text_font_size=look.px(size),
                text_color=color,
            )
        fig.axis.visible, fig.grid.visible = False, False
        return fig


def _detail(shape: str, params: int) -> str:
    """A node's third line: its output shape and parameter count."""
    count = f"{params:,} params"
    return f"{shape} · {count}" if shape else count


def _table_columns() -> list[TableColumn]:
    number = NumberFormatter(format="0,0")
    return [
        TableColumn(field="name", title="Layer"), TableColumn(field="type", title="Type"),
        TableColumn(field="shape", title="Output shape"),
        TableColumn(field="params", title="Parameters", formatter=number),
        TableColumn(field="trainable", title="Trainable", formatter=number),
    ]  # fmt: skip
