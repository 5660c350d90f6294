"""The events strip: what the runs shown want on screen, newest first.

Events are rare (a NaN, a checkpoint, a stall), so the strip is one ``Div``
(``events``) re-rendered when events arrive, holding at most ``MAX_EVENTS``.
Besides the producers' events it lists those the dashboard derives from the
data (``monitor.dashboard.derived_events``): a series' first NaN or infinity,
a run going stale and sending again.
"""

from __future__ import annotations

import html
import time
from collections import deque
from collections.abc import Sequence

from bokeh.models.widgets import Div

from monitor.dashboard.batch import Batch
from monitor.dashboard.derived_events import EventDeriver, same_as_derived
from monitor.dashboard.directory import RunDirectory
from monitor.dashboard.history import RunHistory
from monitor.dashboard.panels.base import Panel
from monitor.dashboard.theme import Look
from monitor.wire import Event, EventLevel, Finish

MAX_EVENTS = 50
EMPTY_TEXT = (
    "No events yet: NaN or infinite values and runs gone quiet show here by themselves; "
    "a run adds its own (a checkpoint saved) with <code>monitor.event('text')</code>."
)
_LEVEL_COLORS = {"info": "#1f77b4", "warning": "#ff7f0e", "error": "#d62728"}


class EventsPanel(Panel):
    """Recent events of the runs shown, newest first."""

    def __init__(
        self,
        look: Look,
        directory: RunDirectory,
        stale_after: float,
        most: int | None = None,
    ) -> None:
        """``most`` events are listed (the newest; all kept, ``MAX_EVENTS``, when None), in a strip that scrolls.

        ``directory`` names the runs and tells their status (stale after ``stale_after`` s of silence) for the
        derived events.
        """
        self._look, self._label, self._most = look, directory.label, most
        self._directory = directory
        self._deriver = EventDeriver(stale_after)
        self._runs: list[str] = []
        self._events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.div = Div(
            text="", name="events", sizing_mode="stretch_width", styles={"color": look.text}, disable_math=True
        )
        self.layout = self.div
        self._render()

    def reset(self, runs: Sequence[str]) -> None:
        self._runs = list(runs)
        self._events.clear()
        self._deriver.reset()
        self._render()

    def compare(self, runs: Sequence[str]) -> bool:
        self._runs = list(runs)
        self._events = deque((e for e in self._events if e.run in runs), maxlen=MAX_EVENTS)
        self._deriver.keep(runs)
        self._render()
        return True

    def load(self, history: RunHistory) -> None:
        self._add([*history.events, *self._deriver.from_history(history)])

    def update(self, batch: Batch) -> None:
        finishes = [_finish_event(f) for f in batch.finishes]
        derived = self._deriver.from_scalars([m for m in batch.scalars if m.run in self._runs])
        self._add([e for e in [*batch.events, *finishes, *derived] if e.run in self._runs])

    def tick(self, now: float) -> None:
        derived = []
        for run in self._runs:
            derived += self._deriver.from_status(self._directory.get(run), self._directory.status(run, now), now)
        self._add(derived)

    def _add(self, events: Sequence[Event]) -> None:
        if events:
            merged = sorted([*self._events, *events], key=lambda e: e.wall)
            merged = [e for e in merged if not any(same_as_derived(p, e) for p in merged)]
            self._events = deque(merged[-MAX_EVENTS:], maxlen=MAX_EVENTS)
            self._render()

    def _render(self) -> None:
        if not self._events:
            self.div.text = f"<div style='color:{self._look.muted}'>{EMPTY_TEXT}</div>"
            return
        items = [self._item(e) for e in list(reversed(self._events))[: self._most]]
        self.div.text = "<div style='max-height:240px;overflow-y:auto'>" + "".join(items) + "</div>"

    def _item(self, event: Event) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(event.wall))
        color = _LEVEL_COLORS.get(event.level, self._look.muted)
        run = html.escape(self._label(event.run)) if len(self._runs) > 1 else ""
        step = f"step {event.step}" if event.step >= 0 else ""
        return (
            f"<div class='event' style='border-left:4px solid {color};padding:2px 8px;margin:2px 0'>"
            f"<span style='color:{self._look.muted}'>{when} {run} {step}</span> {html.escape(event.text)}</div>"
        )


def _finish_event(finish: Finish) -> Event:
    level: EventLevel = "error" if finish.status == "crashed" else "info"
    return Event(finish.run, finish.seq, -1, finish.wall, level, f"run {finish.status}")
