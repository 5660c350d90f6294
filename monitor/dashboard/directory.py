"""The run directory every session of the app shares: all runs, kept current.

It reads the run list from the store at start (and every
``directory_refresh`` seconds, off the loop) and follows the hub for every
run, so the runs table, the header's status badge and kiosk mode's "follow
the newest running run" see new runs, progress and endings as they happen
without each session subscribing to every run.

Thread safety: used only on the server's event loop; store reads run in the
context's executor and are merged back on the loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, replace

from tornado.ioloop import IOLoop, PeriodicCallback

from monitor.dashboard.context import DashboardContext
from monitor.hub import HubMessage, Subscription
from monitor.store.base import NotFoundError, RunInfo, RunStatus, RunStore
from monitor.wire import Finish, Hello, Scalars

log = logging.getLogger(__name__)
MAIN_METRICS: tuple[tuple[str, bool], ...] = (
    ("val_loss", False), ("loss", False), ("val_accuracy", True), ("accuracy", True),
    ("epoch_loss", False), ("epoch_accuracy", True), ("epoch_acc", True),
)  # fmt: skip
"""Candidates for a run's main metric, in order, and whether higher is better.

The ``epoch_`` names are how Keras's ``TensorBoard`` callback logs them, as
runs brought in by ``labscreen import-tb`` hold them (one run for ``train``,
one for ``validation``).
"""
_SEED_RUNS = 100


@dataclass(frozen=True)
class RunRow:
    """A run as the dashboard lists it: the store's record plus its best value."""

    info: RunInfo
    best: float | None = None
    best_metric: str = ""


def status_at(info: RunInfo, now: float, stale_after: float) -> RunStatus:
    """``info.status``, or ``"stale"`` for a running run silent for ``stale_after`` s."""
    if info.status in ("running", "stale"):
        return "stale" if now - info.last_seen > stale_after else "running"
    return info.status


class RunDirectory:
    """Every known run, newest first, with a version that changes on any change."""

    def __init__(self, context: DashboardContext) -> None:
        self._context = context
        self._runs: dict[str, RunInfo] = {}
        self._bests: dict[str, dict[str, float]] = {}
        self._bests_read: set[str] = set()  # runs whose stored history has been searched for their best value
        self._reading = False
        self._subscription: Subscription | None = None
        self._timer: PeriodicCallback | None = None
        self._loop: IOLoop | None = None
        self.version = 0
        self._labels: dict[str, str] = {}
        self._labels_version = -1

    def start(self) -> None:
        """Follow the hub and start reading the store; safe to call twice. On the loop."""
        if self._subscription is not None:
            return
        self._loop = IOLoop.current()
        self._subscription = self._context.hub.subscribe(self._on_ready)
        self._timer = PeriodicCallback(self.refresh, self._context.directory_refresh * 1000)
        self._timer.start()
        self.refresh()

    def close(self) -> None:
        """Leave the hub and stop refreshing; safe to call twice."""
        if self._timer is not None:
            self._timer.stop()
        if self._subscription is not None:
            self._subscription.close()

    def refresh(self) -> None:
        """Re-read the run list from the store in the executor, then merge it; skipped while a read runs."""
        assert self._loop is not None
        if self._reading:  # a long backfill of best values must not be read twice at once
            return
        self._reading = True
        future = self._context.executor.submit(_read_runs, self._context.store, set(self._bests_read))
        self._loop.add_future(future, self._merge_store)  # type: ignore[arg-type]

    def rows(self) -> list[RunRow]:
        """All runs, newest first."""
        infos = sorted(self._runs.values(), key=lambda info: info.started, reverse=True)
        return [self._row(info) for info in infos]

    def label(self, run: str) -> str:
        """What to call a run on screen: its name, with its start time when another run has the same name."""
        if self._labels_version != self.version:
            self._labels = _labels(list(self._runs.values()))
            self._labels_version = self.version
        return self._labels.get(run, run)

    def get(self, run: str) -> RunInfo | None:
        """One run, if known."""
        return self._runs.get(run)

    def status(self, run: str, now: float | None = None) -> RunStatus | None:
        """A run's status including staleness, if the run is known."""
        info = self._runs.get(run)
        now = time.time() if now is None else now
        return None if info is None else status_at(info, now, self._context.stale_after)

    def newest_running(self) -> str | None:
        """The most recently started run that is running (not stale), if any."""
        now = time.time()
        running = [i for i in self._runs.values() if status_at(i, now, self._context.stale_after) == "running"]
        return max(running, key=lambda info: info.started).id if running else None

    def _row(self, info: RunInfo) -> RunRow:
        bests = self._bests.get(info.id, {})
        for name, _ in MAIN_METRICS:
            if name in bests:
                return RunRow(info, bests[name], name)
        return RunRow(info)

    def _on_ready(self) -> None:
        assert self._loop is not None
        self._loop.add_callback(self._drain)

    def _drain(self) -> None:
        if self._subscription is None or self._subscription.closed:
            return
        now = time.time()
        for message in self._subscription.drain():
            self._apply(message, now)
        self.version += 1

    def _apply(self, message: HubMessage, now: float) -> None:
        info = self._runs.get(message.run) or RunInfo(message.run, message.run, "", "running", now, now)
        info = replace(info, last_seen=now)
        match message:
            case Hello():
                info = replace(
                    info, name=message.name or message.run, project=message.project, config=message.config,
                    host=message.host, framework=message.framework, rank=message.rank,
                    world_size=message.world_size, status="running", finished=None,
                )  # fmt: skip
            case Scalars() if len(message.steps):
                info = replace(info, last_step=max(info.last_step or 0, int(message.steps.max())))
                self._note_bests(message)
            case Finish():
                info = replace(info, status=message.status, finished=now)
        self._runs[message.run] = info

    def _note_bests(self, message: Scalars) -> None:
        bests = self._bests.setdefault(message.run, {})
        for name, higher in MAIN_METRICS:
            if name in message.names:
                values = message.values[message.index == message.names.index(name)]
                _update_best(bests, name, values.tolist(), higher)

    def _merge_store(self, future: Future[tuple[list[RunInfo], dict[str, dict[str, float]]]]) -> None:
        self._reading = False
        try:
            infos, bests = future.result()
        except Exception:
            log.exception("could not read the run list from the store; will retry")
            return
        for info in infos:
            self._runs[info.id] = _merged(info, self._runs.get(info.id))
        self._bests_read.update(bests)
        for run, values in bests.items():
            for name, value in values.items():
                _update_best(self._bests.setdefault(run, {}), name, [value], dict(MAIN_METRICS)[name])
        self.version += 1


def _labels(infos: list[RunInfo]) -> dict[str, str]:
    """Each run's name; runs sharing a name get their start time (and the id, if that is shared too)."""
    names = Counter(info.name or info.id for info in infos)
    labels = {}
    for info in infos:
        name = info.name or info.id
        labels[info.id] = (
            name if names[name] < 2 else f"{name} · {time.strftime('%m-%d %H:%M:%S', time.localtime(info.started))}"
        )
    repeated = Counter(labels.values())
    return {run: f"{label} · {run}" if repeated[label] > 1 else label for run, label in labels.items()}


def _merged(stored: RunInfo, live: RunInfo | None) -> RunInfo:
    status: RunStatus = "running" if stored.status == "stale" else stored.status
    if live is None:
        return replace(stored, status=status)
    if live.status in ("finished", "crashed") and status == "running":
        status = live.status
    last_step = max(stored.last_step or 0, live.last_step or 0) if (stored.last_step or live.last_step) else None
    return replace(stored, status=status, last_seen=max(stored.last_seen, live.last_seen), last_step=last_step)


def _update_best(bests: dict[str, float], name: str, values: list[float], higher: bool) -> None:
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        candidate = max(finite) if higher else min(finite)
        old = bests.get(name)
        bests[name] = candidate if old is None else (max(old, candidate) if higher else min(old, candidate))


def _read_runs(store: RunStore, read: set[str]) -> tuple[list[RunInfo], dict[str, dict[str, float]]]:
    """The run list, and the best values of up to ``_SEED_RUNS`` runs (newest first) not ``read`` yet.

    A few at a time, so that a refresh stays short; every run gets its turn.
    Searched once: the live stream keeps a running run's best from then on.
    Before, only the newest 100 runs unknown at the time were searched, and
    after a restart the rest of a long list never showed a best value.
    """
    infos = store.list_runs()
    unread = [info.id for info in infos if info.id not in read][:_SEED_RUNS]
    return infos, {run: _read_bests(store, run) for run in unread}


def _read_bests(store: RunStore, run: str) -> dict[str, float]:
    """The run's best value of each main metric in the store; none if it cannot be read (logged, not retried)."""
    bests: dict[str, float] = {}
    try:
        names = set(store.scalar_names(run))
        for name, higher in MAIN_METRICS:
            if name in names:
                _update_best(bests, name, store.scalars(run, name, max_points=1000).values.tolist(), higher)
    except NotFoundError:
        pass
    except Exception:  # one unreadable run must not stop the run list's refresh, every time
        log.exception("could not read the best values of run %s; it shows none", run)
    return bests
