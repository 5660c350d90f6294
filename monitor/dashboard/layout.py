"""The panels of one session and how they are arranged on the page.

The desk view puts the header and the events strip on top and the panels in
tabs; the lab-screen (kiosk) view tiles the curves and the latest results
under a large header, with nothing to click.
"""

from __future__ import annotations

from collections.abc import Callable

from bokeh.layouts import column, row
from bokeh.models import LayoutDOM, TabPanel, Tabs
from bokeh.models.widgets import Div

from monitor.dashboard.directory import RunDirectory
from monitor.dashboard.panels.base import Panel
from monitor.dashboard.panels.curves import CurvesPanel
from monitor.dashboard.panels.data import DataPanel
from monitor.dashboard.panels.events import EventsPanel
from monitor.dashboard.panels.header import HeaderPanel
from monitor.dashboard.panels.model import ModelPanel
from monitor.dashboard.panels.predictions import PredictionsPanel
from monitor.dashboard.panels.runs import RunsPanel
from monitor.dashboard.panels.weights import WeightsPanel
from monitor.dashboard.theme import Look


class PanelSet:
    """Every panel of a session plus the root layout holding them.

    ``heartbeat`` is a hidden ``Div`` whose text changes every tick; the
    page's watchdog reloads when it stops changing (a silently dead socket).
    """

    def __init__(
        self, look: Look, directory: RunDirectory, stale_after: float, on_pick: Callable[[list[str]], None], kiosk: bool
    ) -> None:
        def label(run: str) -> str:
            info = directory.get(run)
            return (info.name if info else "") or run

        self.header = HeaderPanel(look, directory, on_pick, kiosk)
        self.curves = CurvesPanel(look, label, kiosk)
        self.weights = WeightsPanel(look)
        self.predictions = PredictionsPanel(look)
        self.data = DataPanel(look)
        self.model = ModelPanel(look)
        self.runs = RunsPanel(look, directory, stale_after, on_pick)
        self.events = EventsPanel(look, label)
        self.heartbeat = Div(text="0", visible=False, name="heartbeat")
        self.root = self._kiosk_root() if kiosk else self._desk_root()

    def all(self) -> list[Panel]:
        """The panels, in the order they are fed."""
        return [self.header, self.curves, self.weights, self.predictions, self.data, self.model, self.runs, self.events]

    def beat(self) -> None:
        """Change the heartbeat so the page knows its connection is alive."""
        self.heartbeat.text = str(int(self.heartbeat.text) + 1)

    def _desk_root(self) -> LayoutDOM:
        pages = [
            (self.curves, "Training"), (self.weights, "Weights"), (self.predictions, "Predictions"),
            (self.data, "Data"), (self.model, "Model"), (self.runs, "Runs"),
        ]  # fmt: skip
        tabs = Tabs(
            tabs=[TabPanel(child=p.layout, title=t) for p, t in pages], sizing_mode="stretch_width", name="tabs"
        )
        parts = [self.header.layout, self.events.layout, tabs, self.heartbeat]
        return column(*parts, sizing_mode="stretch_width", name="root")

    def _kiosk_root(self) -> LayoutDOM:
        results = row(self.weights.layout, self.predictions.layout, sizing_mode="stretch_width")
        parts = [self.header.layout, self.curves.layout, results, self.events.layout, self.heartbeat]
        return column(*parts, sizing_mode="stretch_width", name="root")
