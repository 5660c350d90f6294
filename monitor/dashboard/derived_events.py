"""Events the dashboard reads off the data itself: a series' first non-finite value, a run going quiet.

A producer reports what only it knows (``monitor.event``: a checkpoint, the
Keras callback's NaN loss). What the server sees anyway needs no producer's
help: the first NaN or infinity of each series of a run ("val_loss is nan at
step 120"), and a running run that sends nothing for the server's stale time
("no data for 2m 00s: stale") and that later sends again ("data again after
7m 30s"). They are derived from what a page is shown (history and live data,
and the run list's ``last_seen``), so a page opened later derives the same
NaN events from the history and the stale one from the run's state; the
"data again" event is seen only by pages open when it happens (the gap stays
in the curves). Nothing is stored.

A derived NaN event reads as the Keras callback's ("loss is nan at step 4";
its own may add " - stopping training"), so ``EventsPanel`` keeps only the
producer's when both arrive: the producer's may be at an earlier step, since
the callback sends scalars every ``update_every`` batches but checks the
loss at every batch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import numpy as np

from monitor.dashboard.history import RunHistory
from monitor.dashboard.panels.header import format_age
from monitor.store.base import RunInfo, RunStatus
from monitor.wire import Event, Scalars

Array = np.ndarray[Any, Any]
DERIVED_SEQ = -1
"""The ``seq`` of a derived event (a producer's are positive)."""


class EventDeriver:
    """Derives events for the runs one page shows; ``reset`` when they change."""

    def __init__(self, stale_after: float) -> None:
        self._stale_after = stale_after
        self._nonfinite: set[tuple[str, str]] = set()
        self._silent: dict[str, float] = {}
        """Runs reported stale: run -> the ``last_seen`` they went quiet after."""

    def reset(self) -> None:
        """Forget what was reported (the page now shows other runs)."""
        self._nonfinite.clear()
        self._silent.clear()

    def keep(self, runs: Collection[str]) -> None:
        """Forget what was reported of runs not in ``runs`` (no longer shown; shown again, they are reported again)."""
        self._nonfinite = {(run, name) for run, name in self._nonfinite if run in runs}
        self._silent = {run: seen for run, seen in self._silent.items() if run in runs}

    def from_history(self, history: RunHistory) -> list[Event]:
        """The first non-finite value of each series in a run's history."""
        series = history.scalars.values()
        return list(self._first_nonfinite((history.run, s.name, s.steps, s.wall, s.values) for s in series))

    def from_scalars(self, messages: list[Scalars]) -> list[Event]:
        """The first non-finite value of each series, among live points, not reported before."""
        return list(self._first_nonfinite(_series_of(messages)))

    def from_status(self, info: RunInfo | None, status: RunStatus | None, now: float) -> list[Event]:
        """A run gone stale since the last call, or sending again after being reported stale."""
        if info is None:
            return []
        run = info.id
        if status == "stale" and run not in self._silent:
            self._silent[run] = info.last_seen
            text = f"no data for {format_age(self._stale_after)}: stale"
            wall = info.last_seen + self._stale_after
            return [Event(run, DERIVED_SEQ, _step(info), wall, "warning", text)]
        if status != "stale" and run in self._silent:
            quiet_since = self._silent.pop(run)
            if status != "running":
                return []  # finished or crashed: the run's own event says so
            text = f"data again after {format_age(info.last_seen - quiet_since)}"
            return [Event(run, DERIVED_SEQ, _step(info), info.last_seen, "info", text)]
        return []

    def _first_nonfinite(self, series: Iterator[tuple[str, str, Array, Array, Array]]) -> Iterator[Event]:
        for run, name, steps, wall, values in series:
            if (run, name) in self._nonfinite:
                continue
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                i = int(bad[0])
                self._nonfinite.add((run, name))
                value, step = float(values[i]), int(steps[i])
                yield Event(run, DERIVED_SEQ, step, float(wall[i]), "error", nonfinite_text(name, value, step))


def nonfinite_text(name: str, value: float, step: int) -> str:
    """``"loss is nan at step 4"``: as the Keras callback words its own NaN event."""
    return f"{name} is {value} at step {step}"


def same_as_derived(producer: Event, derived: Event) -> bool:
    """Whether a producer's event says what a derived one says (so the derived one is not shown too).

    The same run, the same "<series> is <value> at step" at the derived step or before.
    """
    head = derived.text.split(" at step ", 1)[0] + " at step "
    return (
        derived.seq == DERIVED_SEQ
        and producer.seq != DERIVED_SEQ
        and producer.run == derived.run
        and 0 <= producer.step <= derived.step
        and producer.text.startswith(head)
    )


def _series_of(messages: list[Scalars]) -> Iterator[tuple[str, str, Array, Array, Array]]:
    """The non-finite points of each message, per series (a diverged run's finite series cost nothing)."""
    for message in messages:
        if not message.nonfinite:
            continue
        bad = ~np.isfinite(message.values)
        for index in np.unique(message.index[bad]).tolist():
            mask = bad & (message.index == index)
            name = message.names[index]
            yield message.run, name, message.steps[mask], message.wall[mask], message.values[mask]


def _step(info: RunInfo) -> int:
    return info.last_step if info.last_step is not None else -1
