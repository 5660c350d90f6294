"""The Bokeh application: one ``DashboardSession`` per browser tab.

``make_dashboard`` returns an ``Application`` the server mounts at ``/`` on
the same event loop as ingest. Query arguments: ``kiosk=1`` (or ``0``) for
the lab-screen view, ``theme=dark|light``, ``run=<id>`` (repeatable) for the
runs to show first, ``tab=<title>`` (e.g. ``weights``) for the tab to open,
``cycle=<seconds>`` for how long the lab screen shows each of its pages.
Making it also makes Bokeh remember its property defaults (``monitor.dashboard.defaults``), and
starts a stock of blank chart figures the sessions share (``monitor.dashboard.blanks``).
Beyond ``max_viewers`` open sessions a tab gets the viewer-limit page (``monitor.dashboard.seats``) instead.
"""

from __future__ import annotations

import logging
import math
from functools import partial

from bokeh.application import Application
from bokeh.application.application import ServerContext
from bokeh.application.handlers.function import FunctionHandler
from bokeh.application.handlers.handler import Handler
from bokeh.document import Document
from bokeh.server.contexts import BokehSessionContext

from monitor.dashboard.blanks import FigureStock
from monitor.dashboard.context import DashboardContext
from monitor.dashboard.defaults import remember_defaults
from monitor.dashboard.directory import RunDirectory
from monitor.dashboard.kiosk import DEFAULT_SECONDS
from monitor.dashboard.layout import PanelSet
from monitor.dashboard.panels.curves import blank_chart
from monitor.dashboard.seats import Seat, Seats, limit_page
from monitor.dashboard.session import DashboardSession
from monitor.dashboard.template import page_template, page_variables
from monitor.dashboard.theme import Look, look_for

log = logging.getLogger(__name__)
_TRUE = {"1", "true", "yes", "on"}


class _SharedLifecycle(Handler):
    """Closes what the sessions share (the run directory, the stock of figures) when the server unloads the app."""

    def __init__(self, directory: RunDirectory, figures: FigureStock) -> None:
        super().__init__()
        self._directory, self._figures = directory, figures

    def modify_document(self, doc: Document) -> None:
        """Nothing: the function handler builds the document."""

    def on_server_unloaded(self, server_context: ServerContext) -> None:
        self._directory.close()
        self._figures.close()


def make_dashboard(context: DashboardContext) -> Application:
    """The dashboard as a Bokeh application sharing ``context`` across sessions.

    Args:
        context: Hub, store, executor and settings of the hosting server.

    Returns:
        An application to mount (e.g. ``BokehTornado({"/": app}, ...)``);
        it must run on the event loop that calls ``context.hub.publish``.
    """
    remember_defaults()
    directory = RunDirectory(context)
    figures = FigureStock()
    figures.keep(*blank_chart(look_for(context.kiosk, dark=False)))  # the default view's charts
    seats = Seats(context.max_viewers, partial(_count_refusal, context))
    build = partial(_build, context, directory, seats, figures)
    return Application(FunctionHandler(build), _SharedLifecycle(directory, figures))


def _count_refusal(context: DashboardContext) -> None:
    if context.metrics is not None:
        context.metrics.errors["viewer_limit"] += 1


def _build(
    context: DashboardContext, directory: RunDirectory, seats: Seats, figures: FigureStock, doc: Document
) -> None:
    arguments = _arguments(doc)
    kiosk = _flag(arguments, "kiosk", context.kiosk)
    look = look_for(kiosk, dark=arguments.get("theme", [""])[0] == "dark")
    doc.theme = look.bokeh_theme()
    seat = seats.take()
    if seat is None:
        limit_page(doc, look, seats.limit, context.healthz_path)
        return
    try:
        tab = arguments.get("tab", [None])[0]
        cycle = _seconds(arguments, "cycle", DEFAULT_SECONDS)
        session = _dashboard(
            context, directory, doc, look, kiosk=kiosk, seat=seat, tab=tab, cycle=cycle, figures=figures
        )
    except BaseException:
        seat.release()
        raise
    doc.add_next_tick_callback(partial(session.start, arguments.get("run", [])))


def _dashboard(
    context: DashboardContext,
    directory: RunDirectory,
    doc: Document,
    look: Look,
    *,
    kiosk: bool,
    seat: Seat,
    tab: str | None,
    cycle: float,
    figures: FigureStock,
) -> DashboardSession:
    directory.start()
    doc.title = "labscreen"
    doc.template = page_template()
    doc.template_variables.update(page_variables(look.page_css(), context.healthz_path, kiosk))
    doc.config.reconnect_session = False
    doc.config.notify_connection_status = False
    session: DashboardSession | None = None

    def pick(runs: list[str]) -> None:
        if session is not None:
            # The picker and the runs table echo every selection, the session's own too: a pick differs.
            picked = list(dict.fromkeys(runs)) != session.selected
            session.select(runs)
            if picked and session.started:
                panels.header.name_in_address(session.selected)

    panels = PanelSet(look, directory, context.stale_after, pick, kiosk, kiosk_seconds=cycle, figures=figures)
    session = DashboardSession(context, directory, doc, panels, follow=kiosk, seat=seat, first_tab=tab)
    for root in session.roots:
        doc.add_root(root)
    return session


def _arguments(doc: Document) -> dict[str, list[str]]:
    context = doc.session_context
    request = context.request if isinstance(context, BokehSessionContext) else None
    raw = request.arguments if request is not None else {}
    return {key: [v.decode("utf-8", "replace") for v in values] for key, values in raw.items()}


def _seconds(arguments: dict[str, list[str]], name: str, default: float) -> float:
    """A positive number of seconds from the query, or ``default`` (logged) when absent or not one."""
    values = arguments.get(name)
    if not values:
        return default
    try:
        seconds = float(values[0])
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        log.info("ignoring %s=%r: not a positive number of seconds; using %s", name, values[0], default)
        return default
    return seconds


def _flag(arguments: dict[str, list[str]], name: str, default: bool) -> bool:
    values = arguments.get(name)
    return default if not values else values[0].lower() in _TRUE
