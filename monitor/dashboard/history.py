"""A run's history as a new session sees it, which parts of it are read, and the seam to the live feed.

``load_history`` is blocking (it reads the store) and runs in the executor.
A session subscribes to the hub *before* loading, buffers what arrives, and
passes that buffer through ``after_history`` so the live feed continues
exactly where the history ends: no gap, because the store is flushed before
it is read, so everything published before the subscription is in the
history; no duplicate, because buffered points at or before the history's
last step of their series are dropped. Messages the hub delivered that the
session's feed has not drawn yet (it rations flushes and paces them to the
page) are moved into the buffer before the seam is made; otherwise they
would be drawn after the history as duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from monitor.hub import HubMessage
from monitor.store.base import NotFoundError, RunInfo, RunStore, ScalarSeries
from monitor.wire import DataSummary, Event, Graph, Histogram, Predictions, Scalars

log = logging.getLogger(__name__)
FLUSH_TIMEOUT = 5.0


@dataclass(frozen=True)
class Parts:
    """Which parts of a run's history a reader draws (``ALL``: every part).

    A tab opened late loads the history again for its panel alone, so it
    reads only what that panel draws: the Weights tab of a run with 34
    series read all of them, and every other part, to draw six.
    """

    scalars: tuple[str, ...] | None = ()
    """Prefixes of the scalar series read; ``None`` for every series."""
    histograms: bool = False
    predictions: bool = False
    graph: bool = False
    data: bool = False
    events: bool = False


ALL = Parts(scalars=None, histograms=True, predictions=True, graph=True, data=True, events=True)


@dataclass(frozen=True)
class RunHistory:
    """What a session draws for one run at the moment it opens: every part, or those ``load_history`` was asked for."""

    run: str
    info: RunInfo | None = None
    scalars: dict[str, ScalarSeries] = field(default_factory=dict)
    histograms: dict[str, list[Histogram]] = field(default_factory=dict)
    predictions: list[Predictions] = field(default_factory=list)
    graph: Graph | None = None
    data: list[DataSummary] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def last_scalar_step(self, name: str) -> int | None:
        """Last step of a scalar series in the history, if it has any points."""
        series = self.scalars.get(name)
        return int(series.steps[-1]) if series is not None and len(series.steps) else None


def load_history(store: RunStore, run: str, points: int, histograms: int, parts: Parts = ALL) -> RunHistory:
    """Read ``parts`` of a run's history, scalar lines decimated to ``points``. Blocking.

    The store is flushed first so that everything already published is read.
    An unknown run gives an empty history (it may not be written yet). The
    parts not read are empty, and ``after_history`` then keeps every buffered
    live message of their kinds: a reader draws only the parts it reads.
    """
    if not store.flush(FLUSH_TIMEOUT):
        log.warning("store did not flush within %.0fs; history of %r may miss recent points", FLUSH_TIMEOUT, run)
    prefixes = parts.scalars
    try:
        every = store.scalar_names(run) if prefixes != () else []
        names = [n for n in every if prefixes is None or n.startswith(prefixes)]
        return RunHistory(
            run=run, info=store.get_run(run),
            scalars={n: store.scalars(run, n, max_points=points) for n in names},
            histograms=(
                {n: store.histograms(run, n, limit=histograms) for n in store.histogram_names(run)}
                if parts.histograms else {}
            ),
            predictions=store.predictions(run, limit=1) if parts.predictions else [],
            graph=store.graph(run) if parts.graph else None,
            data=store.data_summaries(run) if parts.data else [],
            events=store.events(run, limit=50) if parts.events else [],
        )  # fmt: skip
    except NotFoundError:
        return RunHistory(run=run)


def after_history(messages: list[HubMessage], history: RunHistory) -> list[HubMessage]:
    """The buffered live messages that continue ``history`` without duplicates."""
    seen_events = {(e.seq, e.wall, e.text) for e in history.events}
    kept: list[HubMessage] = []
    for message in messages:
        match message:
            case Scalars():
                trimmed = _trim_scalars(message, history)
                if trimmed is not None:
                    kept.append(trimmed)
            case Histogram():
                known = history.histograms.get(message.name, [])
                if not known or message.step > known[-1].step:
                    kept.append(message)
            case Predictions():
                if all(message.step > p.step for p in history.predictions if p.name == message.name):
                    kept.append(message)
            case Event():
                if (message.seq, message.wall, message.text) not in seen_events:
                    kept.append(message)
            case _:
                kept.append(message)
    return kept


def _trim_scalars(message: Scalars, history: RunHistory) -> Scalars | None:
    limits = np.array([_or_floor(history.last_scalar_step(name)) for name in message.names], dtype=np.float64)
    keep = message.steps > limits[message.index] if len(limits) else np.zeros(0, dtype=bool)
    if keep.all():
        return message
    if not keep.any():
        return None
    return replace(
        message,
        steps=message.steps[keep],
        wall=message.wall[keep],
        index=message.index[keep],
        values=message.values[keep],
    )


def _or_floor(step: int | None) -> float:
    return -np.inf if step is None else float(step)
