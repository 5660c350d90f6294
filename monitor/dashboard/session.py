"""One browser tab: its panels, its feed, the runs it shows, its history loads.

A ``DashboardSession`` owns one Bokeh ``Document``. Selecting runs resets
every panel, points the feed at the new runs and loads each run's history in
the executor. Live messages for a run whose history is still loading are
buffered and, once the history is drawn, passed through ``after_history``
so the seam has neither a gap nor a duplicate. Closing the tab (Bokeh
destroying the session) closes the feed, which leaves the hub, and gives
back the session's seat under the viewer limit. A ``Backlog`` watches the
session's connection: while the viewer is behind the feed holds, and a viewer
that stays behind is dropped (its connection closed, the session closed).
``PageAcks`` paces the feed to what the page has drawn (see
``monitor.dashboard.pacing``). Each flush, history load and tick goes to the
page as one message (``monitor.dashboard.patches``).

The hidden tabs' panels are built when their tab is first opened
(``PanelSet``). A panel built late loads what it draws of the history for
itself (its ``Panel.history`` parts, of the first run alone if it shows
only that one), with the same seam handling per panel: live messages for it
wait until its history is drawn, then continue it.

Thread safety: everything runs on the server's event loop; panel calls run
as document callbacks (document lock held).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from functools import partial

from bokeh.application.application import SessionContext
from bokeh.document import Document
from bokeh.model import Model
from bokeh.server.contexts import BokehSessionContext
from tornado.ioloop import IOLoop

from monitor.dashboard.backlog import Backlog
from monitor.dashboard.batch import Batch
from monitor.dashboard.context import DashboardContext
from monitor.dashboard.directory import RunDirectory
from monitor.dashboard.feed import Feed
from monitor.dashboard.history import ALL, Parts, RunHistory, after_history, load_history
from monitor.dashboard.layout import PanelSet
from monitor.dashboard.pacing import PageAcks
from monitor.dashboard.panels.base import Panel
from monitor.dashboard.patches import OnePatch
from monitor.dashboard.seats import Seat
from monitor.hub import HubMessage

log = logging.getLogger(__name__)
TICK_MS = 1000
ABANDON_MS = 2000
"""A tab without a connection for this long has been closed: leave the hub."""
MAX_BUFFERED = 200_000
"""Live messages held per run while its history loads; beyond, the oldest go."""


class DashboardSession:
    """The state behind one open dashboard tab."""

    def __init__(
        self,
        context: DashboardContext,
        directory: RunDirectory,
        doc: Document,
        panels: PanelSet,
        *,
        follow: bool,
        seat: Seat | None = None,
        first_tab: str | None = None,
    ) -> None:
        self._context, self._directory, self._doc, self.panels = context, directory, doc, panels
        self._follow = follow
        self._seat = seat
        self.selected: list[str] = []
        self._loading: dict[str, list[HubMessage]] = {}
        self.closed = False
        self.started = False
        self._first_tab = first_tab
        self._was_connected = False
        self._late: dict[Panel, dict[str, list[HubMessage]]] = {}
        """Panels built late whose own history loads are pending: run -> live messages held meanwhile."""
        self._ticket = 0
        self._tickets: dict[tuple[Panel | None, str], int] = {}
        """The history load wanted per (panel, or None for every panel; run): an older one, or one for a run dropped
        since, is not drawn (the run's live messages were not held for it)."""
        panels.on_built = self._catch_up
        self.backlog = Backlog(
            doc,
            self._on_backlog_clear,
            self._on_too_slow,
            max_bytes=context.max_backlog_bytes,
            stall_seconds=context.stall_seconds,
        )
        self.acks = PageAcks(self._on_backlog_clear)
        self.patches = OnePatch(doc)
        self.feed = Feed(context.hub, doc, self._on_messages, ready=self._can_send)
        self.backlog.start()
        doc.add_periodic_callback(self._tick, TICK_MS)
        doc.on_session_destroyed(self._on_destroyed)

    @property
    def roots(self) -> list[Model]:
        """The document's roots, in page order (layouts, and the pacing model)."""
        return [*self.panels.roots, self.acks.flow]

    def start(self, runs: Sequence[str] = ()) -> None:
        """Show ``runs`` and open the ``first_tab`` given at construction.

        The app calls this once, on the tick after the document is built and
        its page's HTML answered; later calls do nothing. Until then no runs
        are shown.
        """
        if self.started or self.closed:
            return
        self.started = True
        with self.patches.batched():
            if runs:
                self.select(runs)
            tab = self._first_tab
            if tab and not self.panels.open(tab):
                log.info("no tab %r to open; showing the first", tab)

    def _catch_up(self, panel: Panel) -> None:
        """Bring a panel built late to the runs shown: load their history for it alone.

        Only what it draws is read: its parts (``Panel.history``), of the
        first run alone for a panel that shows only that one. Runs whose
        history the session is still loading need nothing here: that load
        draws into every panel built by then.
        """
        if self.selected:
            panel.reset(self.selected)
            panel.loading(True)  # until the primary run's history is drawn here (by this load or the session's)
        panel.tick(time.time())
        if panel.history == Parts():  # draws no history (the runs table)
            panel.loading(False)
            return
        shown = self.selected[:1] if panel.primary_only else self.selected
        runs = [run for run in shown if run not in self._loading]
        if runs:
            self._late[panel] = {run: [] for run in runs}
            for run in runs:
                self._load(run, panel)

    def select(self, runs: Sequence[str]) -> None:
        """Show ``runs`` (the first is primary): reset panels, follow them, load history.

        When some of ``runs`` are shown already (runs added to a comparison,
        or dropped from it) only the runs added are loaded (``_compare``).
        Before ``start`` this starts the session with ``runs``.
        """
        if not self.started:
            self.start(runs)
            return
        runs = list(dict.fromkeys(runs))
        if runs == self.selected or self.closed:
            return
        with self.patches.batched():
            self._select(runs)

    def _select(self, runs: list[str]) -> None:
        if runs and not set(runs).isdisjoint(self.selected):
            self._compare(runs)
            return
        self.selected = runs
        self._late.clear()
        self._tickets.clear()
        self._loading = {run: [] for run in runs}
        self.feed.follow(runs)
        self.panels.showing(runs, self._directory.label)
        for panel in self.panels.all():
            panel.reset(runs)
            panel.loading(bool(runs))
        for run in runs:
            self._load(run)

    def close(self) -> None:
        """Leave the hub, stop watching the connection, free the seat. Safe to call twice.

        The document is Bokeh's to discard.
        """
        self.closed = True
        self.feed.close()
        self.backlog.stop()
        if self._seat is not None:
            self._seat.release()

    def _compare(self, runs: list[str]) -> None:
        """Show ``runs``, some of which are shown: read only the runs added.

        A panel keeps what it drew of the runs still shown when it can
        (``Panel.compare``); one that cannot, and one that shows the primary
        run alone when that changes (the first run dropped, or another picked
        first), is reset and loads what it draws for itself, as a panel built
        late does. Before, adding a run read and redrew every run shown (3-9 s
        to add a sixth run to 25 charts). A load still running for a run
        dropped is not drawn.
        """
        new_primary = runs[0] != self.selected[0]
        added = [run for run in runs if run not in self.selected]
        self.selected = runs
        self._loading = {run: held for run, held in self._loading.items() if run in runs}
        for panel, held in list(self._late.items()):
            for run in [run for run in held if run not in runs]:
                del held[run]
            if not held:
                del self._late[panel]
        self._loading.update({run: [] for run in added})
        self._tickets = {(panel, run): number for (panel, run), number in self._tickets.items() if run in runs}
        self.feed.follow(runs)
        self.panels.showing(runs, self._directory.label)
        for panel in self.panels.all():
            if (new_primary and panel.primary_only) or not panel.compare(runs):
                self._late.pop(panel, None)
                self._catch_up(panel)
        for run in added:
            self._load(run)

    def _load(self, run: str, panel: Panel | None = None) -> None:
        c = self._context
        parts = panel.history if panel is not None else ALL
        self._ticket += 1
        self._tickets[panel, run] = self._ticket
        future = c.executor.submit(load_history, c.store, run, c.history_points, c.history_histograms, parts)
        IOLoop.current().add_future(future, partial(self._history_ready, run, self._ticket, panel))

    def _history_ready(self, run: str, ticket: int, panel: Panel | None, future: Future[RunHistory]) -> None:
        if self._current(run, ticket, panel):
            self._doc.add_next_tick_callback(partial(self._apply_history, run, ticket, panel, future))

    def _current(self, run: str, ticket: int, panel: Panel | None) -> bool:
        """Whether a history load is still wanted: the runs shown were not replaced, nor ``run`` dropped since.

        Showing other runs clears the tickets, dropping a run its own, and a later load for the same panel and
        run takes a new number: each leaves an older load unwanted.
        """
        return not self.closed and self._tickets.get((panel, run)) == ticket

    def _apply_history(self, run: str, ticket: int, panel: Panel | None, future: Future[RunHistory]) -> None:
        """Draw a run's history: into every panel, or into ``panel`` alone (one built late)."""
        if not self._current(run, ticket, panel):
            return
        del self._tickets[panel, run]
        # The hub has every message accepted before the store was flushed for this history, but the
        # feed may still hold some (rationed, or paced to a busy page): they go to the held buffers
        # now, where the seam trims them, or they would be drawn after the history as duplicates.
        undrawn = self.feed.take()
        with self.patches.batched():
            if undrawn:
                try:
                    self._draw(undrawn)
                except Exception:  # as in the feed's own flush: log, and let the history still be drawn
                    log.exception("dashboard session failed to draw %d live messages before a history", len(undrawn))
            pending = self._late.get(panel) if panel is not None else self._loading
            buffered = pending.pop(run, []) if pending is not None else []
            if panel is not None and not pending:
                self._late.pop(panel, None)
            try:
                history: RunHistory | None = future.result()
            except Exception:
                log.exception("could not load the history of run %s; showing its live data only", run)
                history = None
            targets = [panel] if panel is not None else self.panels.all()
            if history is not None:
                for target in targets:
                    target.load(history)
            if self.selected[:1] == [run]:  # the primary run's history is drawn (or could not be read)
                for target in targets:
                    target.loading(False)
            live = after_history(buffered, history) if history is not None else buffered
            if panel is None:
                self._dispatch(live)
            elif live:
                panel.update(Batch.of(live))

    def _on_messages(self, messages: list[HubMessage]) -> None:
        with self.patches.batched():
            self._draw(messages)

    def _draw(self, messages: list[HubMessage]) -> None:
        live: list[HubMessage] = []
        for message in messages:
            pending = self._loading.get(message.run)
            if pending is not None:
                pending.append(message)
                del pending[:-MAX_BUFFERED]
            elif message.run in self.selected:
                live.append(message)
        self._dispatch(live)
        self.acks.mark()

    def _can_send(self) -> bool:
        return self.backlog.clear() and self.acks.clear()

    def _dispatch(self, messages: list[HubMessage]) -> None:
        if not messages:
            return
        batch = Batch.of(messages)
        for panel in self.panels.all():
            pending = self._late.get(panel)
            if pending is None:
                panel.update(batch)
                continue
            ready = []
            for message in messages:
                held = pending.get(message.run)
                if held is None:
                    ready.append(message)
                else:
                    held.append(message)
                    del held[:-MAX_BUFFERED]
            if ready:
                panel.update(Batch.of(ready))

    def _tick(self) -> None:
        if self.closed or self._abandoned():
            self.close()
            return
        if not self.started:
            return
        with self.patches.batched():
            self._beat()

    def _beat(self) -> None:
        self._choose_runs()
        now = time.time()
        for panel in self.panels.all():
            panel.tick(now)
        self.panels.beat(now)

    def _choose_runs(self) -> None:
        newest = self._directory.newest_running()
        if self._follow and newest is not None and self.selected[:1] != [newest]:
            self.select([newest])
        elif not self.selected:
            rows = self._directory.rows()
            if rows:
                self.select([newest or rows[0].info.id])

    def _abandoned(self) -> bool:
        """Whether the tab is gone: connected once, and no connection for ``ABANDON_MS``.

        Bokeh destroys such a session only after its unused-session lifetime;
        leaving the hub sooner stops fanning data out to a tab nobody sees.
        """
        context = self._doc.session_context
        session = context.session if isinstance(context, BokehSessionContext) else None
        if session is None:
            return False
        if session.connection_count > 0:
            self._was_connected = True
            return False
        return self._was_connected and session.milliseconds_since_last_unsubscribe > ABANDON_MS

    def _on_backlog_clear(self) -> None:
        if not self.closed:
            self.feed.resume()

    def _on_too_slow(self) -> None:
        metrics = self._context.metrics
        if metrics is not None:
            metrics.errors["viewer_too_slow"] += 1
        self.close()

    def _on_destroyed(self, _context: SessionContext) -> None:
        log.debug("dashboard session destroyed; leaving the hub")
        self.close()
