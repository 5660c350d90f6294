"""One session's coalesced, latency-first feed from the hub.

The hub calls ``on_ready`` synchronously inside ``publish`` on the event
loop; the feed only schedules a flush on the session's document there. The
first message after idle is flushed on the next tick; messages arriving
while a flush is pending ride along. Flushes are rationed by a token bucket
of ``BURST`` flushes refilled at one per ``min_interval``, so a session sees
at most about 20 a second however fast data comes. A fixed gap after each
flush would do the same on average, but it phase-locks with a producer
that sends at the same period (a ``Monitor`` under load sends every 50 ms):
a frame that arrives just before the gap ends waits for it, and so does
every later frame, for as long as the run goes on. The bucket lets such a
frame through at once.
While ``ready`` says the session cannot send (its viewer is behind, see
``monitor.dashboard.backlog``), the feed holds: nothing is scheduled, messages
coalesce in the hub subscription (bounded), and ``resume`` flushes them.

Thread safety: used only on the server's event loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from monitor.hub import Hub, HubMessage

log = logging.getLogger(__name__)
MIN_INTERVAL = 0.05
"""Seconds per flush of one session over time: at most 20 a second."""
BURST = 2.0
"""Flushes a session may make back to back before ``MIN_INTERVAL`` rations them."""


class Scheduler(Protocol):
    """The part of ``bokeh.document.Document`` the feed schedules with."""

    def add_next_tick_callback(self, callback: Callable[[], None]) -> Any: ...

    def add_timeout_callback(self, callback: Callable[[], None], timeout_milliseconds: int) -> Any: ...


class Feed:
    """Delivers a session's hub messages in coalesced batches.

    Invariants: at most one flush is scheduled at a time; after ``close`` the
    subscription has left the hub and nothing more is delivered.
    """

    def __init__(
        self,
        hub: Hub,
        scheduler: Scheduler,
        deliver: Callable[[list[HubMessage]], None],
        *,
        min_interval: float = MIN_INTERVAL,
        ready: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scheduler = scheduler
        self._deliver = deliver
        self._min_interval = min_interval
        self._ready = ready
        self._scheduled = False
        self.held = False
        self._clock = clock
        self._tokens = BURST
        self._stamp = clock()
        self.flushes = 0
        self._subscription = hub.subscribe(self._on_ready, runs=())

    @property
    def closed(self) -> bool:
        """Whether the feed has left the hub."""
        return self._subscription.closed

    def follow(self, runs: Iterable[str]) -> None:
        """Receive the messages of these runs (only) from now on."""
        self._subscription.set_runs(runs)

    def close(self) -> None:
        """Leave the hub; safe to call twice."""
        self._subscription.close()

    def take(self) -> list[HubMessage]:
        """Take the messages the hub has delivered and no flush has drawn yet, bypassing the rationing."""
        return self._subscription.drain()

    def resume(self) -> None:
        """Flush what coalesced while the feed was held (call when ``ready`` turns True)."""
        if self.held and self._subscription.pending():
            self._on_ready()

    def _on_ready(self) -> None:
        if self._scheduled or self.closed:
            return
        self.held = not self._ready()
        if self.held:
            return
        self._scheduled = True
        missing = 1.0 - self._refill()
        if missing <= 0:
            self._scheduler.add_next_tick_callback(self._flush)
        else:
            wait = missing * self._min_interval
            self._scheduler.add_timeout_callback(self._flush, max(1, math.ceil(wait * 1000)))

    def _refill(self) -> float:
        """Tokens now (refilled for the time since the last look), at most ``BURST``."""
        now = self._clock()
        if self._min_interval <= 0:
            self._tokens = BURST
        else:
            self._tokens = min(BURST, self._tokens + (now - self._stamp) / self._min_interval)
        self._stamp = now
        return self._tokens

    def _flush(self) -> None:
        self._scheduled = False
        self.held = not self._ready()
        if self.held:
            return
        self._tokens = max(0.0, self._refill() - 1.0)
        messages = self._subscription.drain()
        if not messages or self.closed:
            return
        self.flushes += 1
        try:
            self._deliver(messages)
        except Exception:
            log.exception("dashboard session failed to draw %d live messages; the feed goes on", len(messages))
