"""In-process publish/subscribe from ingest to live viewers.

Ingest publishes every message the store has accepted; each subscriber (a
dashboard session, a test) holds a bounded buffer of the messages for the
runs it follows and drains it when it is ready. A slow subscriber can never
block ingest or other subscribers: when its buffer is full the oldest message
is dropped and counted.

Thread safety: a ``Hub`` and its subscriptions are used from one thread, the
server's event loop. Nothing here blocks.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable

from monitor.wire import DataMessage, Hello

log = logging.getLogger(__name__)

HubMessage = Hello | DataMessage
DEFAULT_CAPACITY = 10_000


class Subscription:
    """One subscriber's bounded view of the hub.

    Invariants: holds at most ``capacity`` messages; ``dropped`` counts every
    message discarded to keep that bound; after ``close`` it receives nothing.
    """

    def __init__(self, hub: Hub, on_ready: Callable[[], None], runs: Iterable[str] | None, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._hub = hub
        self._on_ready = on_ready
        self._buffer: deque[HubMessage] = deque()
        self.capacity = capacity
        self.runs: frozenset[str] | None = None if runs is None else frozenset(runs)
        self.dropped = 0
        self.closed = False

    def set_runs(self, runs: Iterable[str] | None) -> None:
        """Follow these runs from now on (``None``: every run)."""
        self.runs = None if runs is None else frozenset(runs)

    def wants(self, run: str) -> bool:
        """Whether this subscription follows ``run``."""
        return self.runs is None or run in self.runs

    def drain(self) -> list[HubMessage]:
        """Take every buffered message, oldest first."""
        items = list(self._buffer)
        self._buffer.clear()
        return items

    def pending(self) -> int:
        """How many messages wait to be drained."""
        return len(self._buffer)

    def close(self) -> None:
        """Stop receiving and leave the hub; safe to call twice."""
        if not self.closed:
            self.closed = True
            self._buffer.clear()
            self._hub._remove(self)

    def _offer(self, message: HubMessage) -> None:
        was_empty = not self._buffer
        if len(self._buffer) >= self.capacity:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(message)
        if was_empty:
            try:
                self._on_ready()
            except Exception:
                log.exception("subscriber's on_ready callback failed; it keeps its buffer")


class Hub:
    """Fans each published message out to every subscription that follows its run."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.published = 0

    def subscribe(
        self,
        on_ready: Callable[[], None],
        runs: Iterable[str] | None = None,
        capacity: int = DEFAULT_CAPACITY,
    ) -> Subscription:
        """Start a subscription.

        Args:
            on_ready: Called (on the hub's thread) when the subscription's
                buffer goes from empty to non-empty; it should schedule a
                ``drain``. Its exceptions are logged, never raised to ingest.
            runs: Run ids to follow, or ``None`` for every run.
            capacity: Most messages held before the oldest are dropped.

        Raises:
            ValueError: ``capacity`` below 1.
        """
        subscription = Subscription(self, on_ready, runs, capacity)
        self._subscriptions.append(subscription)
        return subscription

    def publish(self, message: HubMessage) -> None:
        """Offer ``message`` to every subscription following its run."""
        self.published += 1
        for subscription in tuple(self._subscriptions):
            if subscription.wants(message.run):
                subscription._offer(message)

    @property
    def subscriber_count(self) -> int:
        """Number of open subscriptions."""
        return len(self._subscriptions)

    def _remove(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
