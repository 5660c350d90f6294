"""The runs table: every run, newest first; selecting rows picks runs to compare.

The table's source (``runs-table``) is patched in place when a run's status,
step or best value changes and replaced only when runs come or go.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from bokeh.layouts import column
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import DataTable, DateFormatter, NumberFormatter, TableColumn

from monitor.dashboard.directory import RunDirectory, RunRow, status_at
from monitor.dashboard.history import Parts
from monitor.dashboard.panels.base import Panel, empty_state, floats
from monitor.dashboard.panels.header import NO_RUNS_TEXT, format_age
from monitor.dashboard.theme import Look

MAX_ROWS = 500
FULL_REFRESH = 5.0
"""Seconds between refreshes of durations and staleness when nothing else changed."""
_COLUMNS = ("id", "name", "project", "status", "started", "duration", "last_step", "best", "best_of", "config")


class RunsPanel(Panel):
    """A table of all runs, kept current from the run directory."""

    history = Parts()

    def __init__(
        self, look: Look, directory: RunDirectory, stale_after: float, on_pick: Callable[[list[str]], None]
    ) -> None:
        self._directory, self._stale_after, self._on_pick = directory, stale_after, on_pick
        self._seen_version = -1
        self._last_full = 0.0
        self._shown: list[str] = []
        self.source = ColumnDataSource(data={c: [] for c in _COLUMNS}, name="runs-table")
        self.source.selected.on_change("indices", lambda _a, _o, new: self._picked(list(new)))
        self.table = DataTable(
            source=self.source,
            columns=_table_columns(),
            sizing_mode="stretch_width",
            height=360,
            index_position=None,
            reorderable=False,
            # Not Bokeh's default: every patch (durations and steps, each second while a run is live)
            # scrolled the table back to the first selected row, so rows past the first screen were out of reach.
            scroll_to_selection=False,
            name="runs-datatable",
        )
        self._empty = empty_state(look, "runs-empty", NO_RUNS_TEXT)
        self.layout = column(self._empty, self.table, sizing_mode="stretch_width", name="runs")

    def reset(self, runs: Sequence[str]) -> None:
        self._shown = list(runs)
        self._select_shown()

    def compare(self, runs: Sequence[str]) -> bool:
        self.reset(runs)
        return True

    def tick(self, now: float) -> None:
        if self._directory.version == self._seen_version and now - self._last_full < FULL_REFRESH:
            return
        self._seen_version, self._last_full = self._directory.version, now
        rows = self._directory.rows()[:MAX_ROWS]
        columns = _columns(rows, now, self._stale_after)
        if list(self.source.data["id"]) == columns["id"]:
            self._patch(columns)
        else:
            self.source.data = columns
            self._select_shown()
        self._empty.visible = not rows

    def _patch(self, columns: dict[str, list[Any]]) -> None:
        patches: dict[str, list[tuple[int, Any]]] = {}
        for name, values in columns.items():
            old = self.source.data[name]
            changed = [(i, v) for i, v in enumerate(values) if not _same(old[i], v)]
            if changed:
                patches[name] = changed
        if patches:
            self.source.patch(patches)

    def _select_shown(self) -> None:
        ids = list(self.source.data["id"])
        indices = [ids.index(run) for run in self._shown if run in ids]
        if sorted(self.source.selected.indices) != sorted(indices):
            self.source.selected.indices = indices

    def _picked(self, indices: list[int]) -> None:
        ids = list(self.source.data["id"])
        runs = [ids[i] for i in sorted(indices) if i < len(ids)]
        if runs and set(runs) != set(self._shown):
            self._on_pick(runs)


def _columns(rows: list[RunRow], now: float, stale_after: float) -> dict[str, list[Any]]:
    infos = [r.info for r in rows]
    return {
        "id": [i.id for i in infos],
        "name": [i.name or i.id for i in infos],
        "project": [i.project for i in infos],
        "status": [status_at(i, now, stale_after) for i in infos],
        "started": floats([i.started * 1000.0 for i in infos]).tolist(),
        "duration": [format_age((i.finished or now) - i.started) for i in infos],
        "last_step": [-1 if i.last_step is None else i.last_step for i in infos],
        "best": [float("nan") if r.best is None else r.best for r in rows],
        "best_of": [r.best_metric if r.best is not None else "" for r in rows],
        "config": [json.dumps(i.config, sort_keys=True)[:200] for i in infos],
    }


def _table_columns() -> list[TableColumn]:
    titles = {
        "name": "Run",
        "project": "Project",
        "status": "Status",
        "duration": "Duration",
        "last_step": "Last step",
        "best": "Best",
        "best_of": "Best of",
        "config": "Config",
    }
    best = NumberFormatter(format="0.0[000]", nan_format="")  # not all 16 digits
    columns = [
        TableColumn(field=f, title=t, formatter=best, width=_WIDTHS[f])
        if f == "best"
        else TableColumn(field=f, title=t, width=_WIDTHS[f])
        for f, t in titles.items()
    ]
    started = DateFormatter(format="%Y-%m-%d %H:%M:%S")
    columns.insert(3, TableColumn(field="started", title="Started", formatter=started, width=_WIDTHS["started"]))
    return columns


_WIDTHS = {
    "name": 220, "project": 120, "status": 80, "started": 150, "duration": 80, "last_step": 80, "best": 80,
    "best_of": 90, "config": 260,
}  # fmt: skip
"""Relative column widths (the table fits them to its width): room for run names, little for numbers."""


def _same(old: Any, new: Any) -> bool:
    both_nan = isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new)
    return both_nan or bool(old == new)
