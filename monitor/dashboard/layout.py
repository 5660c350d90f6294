"""The panels of one session and how they are arranged on the page.

The desk view puts the header and the events strip on top and the panels in
tabs; the lab-screen (kiosk) view shows the curves, the weights and the
predictions in turn, one window high, under a large header, with nothing to
click (``monitor.dashboard.kiosk``).

Each part is its own document root, not a child of one page-wide column.
BokehJS (3.x) re-renders a ``Div`` on every change and then recomputes the
layout of the whole tree up to its root: it re-measures every view
(``getComputedStyle``, ``getBoundingClientRect``) and repaints every plot.
With the header's values, the heartbeat and the plots under one root, each
header change cost a full-page layout, and at a few changes per second the
browser's main thread could not keep up. As separate roots, a header,
events or heartbeat change lays out only that small root.

Only the open tab is in the document. The desk view's tabs each hold
their panel's layout in a ``column``; the tabs not shown hold a small
placeholder instead, and opening a tab swaps its panel in and the previous
one out. Bokeh's server walks every model of a document for each message it
sends (``PATCH-DOC`` builds a reference table of the whole document), and
BokehJS keeps a view, with its layout and paint work, for every model it
has; with all six tabs attached a session held about 670 models, and the
walk alone was the largest part of the time from ingest to the page. A
panel keeps updating its sources while detached, which costs no messages
(a model outside a document sends nothing), so an opened tab shows
everything that arrived meanwhile.

The hidden tabs' panels are built when their tab is first opened (see
``PanelSet``): building them all at once took most of a second of the event
loop per new page, during which that page could not even fetch BokehJS from
the same server.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from bokeh.layouts import column
from bokeh.models import Column, LayoutDOM, TabPanel, Tabs
from bokeh.models.ui import UIElement
from bokeh.models.widgets import Div

from monitor.dashboard.blanks import FigureStock
from monitor.dashboard.directory import RunDirectory
from monitor.dashboard.kiosk import DEFAULT_SECONDS, KioskStage
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
    ``roots`` are the document roots, top to bottom (see the module doc).

    ``figures`` is where the curves take their charts' figures from (see
    ``monitor.dashboard.blanks``).

    The desk view builds the header, the curves and the events at once, and
    another tab's panel when that tab is first opened; each panel built then
    is handed to ``on_built`` so the session can bring it up to date (the
    runs shown and their history). The kiosk view builds the panels it shows
    (curves, weights, predictions) at once and no others.
    """

    def __init__(
        self,
        look: Look,
        directory: RunDirectory,
        stale_after: float,
        on_pick: Callable[[list[str]], None],
        kiosk: bool,
        *,
        kiosk_seconds: float = DEFAULT_SECONDS,
        figures: FigureStock | None = None,
    ) -> None:
        self._look = look
        self.header = HeaderPanel(look, directory, on_pick, kiosk)
        self.curves = CurvesPanel(look, directory.label, kiosk, figures)
        self.events = EventsPanel(look, directory, stale_after, most=KIOSK_EVENTS if kiosk else None)
        self.stage: KioskStage | None = None
        self._kiosk_seconds = kiosk_seconds
        self.on_built: Callable[[Panel], None] = lambda _panel: None
        self._later: list[tuple[str, Callable[[], Panel]]] = [
            ("Weights", lambda: WeightsPanel(look)),
            ("Predictions", lambda: PredictionsPanel(look)),
            ("Data", lambda: DataPanel(look)),
            ("Model", lambda: ModelPanel(look)),
            ("Runs", lambda: RunsPanel(look, directory, stale_after, on_pick)),
        ]
        if kiosk:  # the lab screen shows weights and predictions beside the curves, and no tabs
            del self._later[2:]
        self._titles = ["Training", *(title for title, _ in self._later)]
        self._tab_panels: list[Panel | None] = [self.curves, *(None for _ in self._later)]
        self.heartbeat = Div(text="0", visible=False, name="heartbeat")
        self._placeholders = [_placeholder() for _ in self._titles]
        self._primary = Div(text="", visible=False, sizing_mode="stretch_width", name="primary-run", disable_math=True)
        self._holders: list[Column] = []
        self._tabs: Tabs | None = None
        self._shown = 0
        self.roots = self._kiosk_roots() if kiosk else self._desk_roots()

    def all(self) -> list[Panel]:
        """The panels built so far, in the order they are fed."""
        built = [panel for panel in self._tab_panels if panel is not None]
        return [self.header, *built, self.events]

    def _build(self, index: int) -> Panel:
        panel = self._later[index - 1][1]()
        self._tab_panels[index] = panel
        self.on_built(panel)
        return panel

    def beat(self, now: float) -> None:
        """Change the heartbeat so the page knows its connection is alive; turn the lab screen's pages."""
        self.heartbeat.text = str(int(self.heartbeat.text) + 1)
        if self.stage is not None:
            self.stage.tick(now)

    def _desk_roots(self) -> list[LayoutDOM]:
        self._holders = [column(p, sizing_mode="stretch_width") for p in self._placeholders]
        self.show(0)
        panels = [TabPanel(child=holder, title=t) for holder, t in zip(self._holders, self._titles, strict=True)]
        self._tabs = tabs = Tabs(tabs=panels, sizing_mode="stretch_width", name="tabs")
        tabs.on_change("active", lambda _a, _o, new: self.show(new))
        return [self.header.layout, self.events.layout, tabs, self.heartbeat]

    def open(self, title: str) -> bool:
        """Open the tab titled ``title`` (any case); False if there is none (or no tabs: kiosk)."""
        titles = [t.lower() for t in self._titles]
        if self._tabs is None or title.lower() not in titles:
            return False
        self._tabs.active = titles.index(title.lower())
        return True

    def show(self, index: int) -> None:
        """Put tab ``index``'s panel in the document and every other tab's placeholder (desk view only).

        A tab whose panel is not built yet has it built now (see ``on_built``).
        """
        self._shown = index
        if self._tab_panels[index] is None:
            self._build(index)
        # The others first: the note above a one-run tab moves with it, and must leave its old tab
        # before it joins the new one (one model in two places makes BokehJS build a second view).
        for i, holder in sorted(enumerate(self._holders), key=lambda pair: pair[0] == index):
            panel = self._tab_panels[i] if i == index else None
            wanted: list[UIElement] = [panel.layout] if panel is not None else [self._placeholders[i]]
            if panel is not None and panel.primary_only:
                wanted.insert(0, self._primary)
            if list(holder.children) != wanted:
                holder.children = wanted  # not TabPanel.child: BokehJS 3.9 then draws the tab blank

    def showing(self, runs: list[str], label: Callable[[str], str]) -> None:
        """Note the runs shown: tabs that show only the first say so when there are more (desk view).

        The lab screen starts its pages again (``KioskStage.reset``).
        """
        if self.stage is not None:
            self.stage.reset()
        self._primary.visible = len(runs) > 1
        if runs:
            self._primary.text = (
                f"<div style='color:{self._look.muted};padding:4px 0'>Comparing {len(runs)} runs: this tab shows "
                f"<b style='color:{self._look.text}'>{html.escape(label(runs[0]))}</b>, the first picked; "
                "the Training tab overlays them all.</div>"
            )

    def _kiosk_roots(self) -> list[LayoutDOM]:
        for index, panel in enumerate(self._tab_panels):
            if panel is None:
                self._build(index)
        pairs = zip(self._titles[1:], self._tab_panels[1:], strict=True)
        others = [(title, panel) for title, panel in pairs if panel is not None]
        self.stage = KioskStage(self._look, self.curves, others, self._kiosk_seconds)
        # The page writes the window's shape here (static/viewport.js): a portrait screen gets one column.
        viewport = Div(text="", visible=False, name="viewport")
        viewport.on_change("text", lambda _a, _o, new: self._set_portrait(new == "portrait"))
        return [self.header.layout, self.stage.layout, self.events.layout, self.heartbeat, viewport]

    def _set_portrait(self, portrait: bool) -> None:
        for panel in self._tab_panels:
            if panel is not None:
                panel.set_portrait(portrait)


KIOSK_EVENTS = 3
"""Events the lab screen lists (the newest), so the stage keeps the window's height."""


def _placeholder() -> Div:
    return Div(text="Loading…", sizing_mode="stretch_width", name="tab-placeholder")
