"""Unit tests of the in-process hub with plain subscribers."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.hub import Hub
from monitor.wire import Event, Hello, Scalars


def event(run: str, i: int) -> Event:
    return Event(run, i, i, 0.0, "info", f"e{i}")


def test_fans_out_to_every_follower_of_the_run() -> None:
    hub = Hub()
    ready: list[str] = []
    everyone = hub.subscribe(lambda: ready.append("all"))
    only_a = hub.subscribe(lambda: ready.append("a"), runs=["a"])
    hub.publish(event("a", 1))
    hub.publish(event("b", 2))
    assert [m.seq for m in everyone.drain()] == [1, 2]
    assert [m.seq for m in only_a.drain()] == [1]
    assert ready == ["all", "a"]


def test_on_ready_fires_once_per_empty_to_nonempty() -> None:
    hub = Hub()
    calls = []
    sub = hub.subscribe(lambda: calls.append(1))
    for i in range(5):
        hub.publish(event("r", i))
    assert len(calls) == 1
    sub.drain()
    hub.publish(event("r", 9))
    assert len(calls) == 2


def test_slow_subscriber_drops_oldest_and_counts_without_harming_others() -> None:
    hub = Hub()
    slow = hub.subscribe(lambda: None, capacity=3)
    fast = hub.subscribe(lambda: None)
    for i in range(10):
        hub.publish(event("r", i))
    assert [m.seq for m in slow.drain()] == [7, 8, 9]
    assert slow.dropped == 7
    assert len(fast.drain()) == 10 and fast.dropped == 0


def test_failing_callback_is_logged_and_does_not_reach_publisher(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub()

    def explode() -> None:
        raise RuntimeError("boom")

    sub = hub.subscribe(explode)
    other = hub.subscribe(lambda: None)
    hub.publish(Hello(run="r", stream="s"))
    assert sub.pending() == 1 and other.pending() == 1
    assert "on_ready callback failed" in caplog.text


def test_close_unsubscribes_and_set_runs_switches() -> None:
    hub = Hub()
    sub = hub.subscribe(lambda: None, runs=["a"])
    sub.set_runs(["b"])
    hub.publish(Scalars("b", 1, ("x",), np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int32), np.ones(1)))
    assert sub.pending() == 1
    assert hub.subscriber_count == 1
    sub.close()
    sub.close()
    assert hub.subscriber_count == 0
    hub.publish(event("b", 2))
    assert sub.pending() == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Hub().subscribe(lambda: None, capacity=0)
