"""Unit tests of the viewer-side limits' pure parts: the feed holding for a slow viewer, and the seats.

The browser-level behaviour (a real viewer that never reads, the limit page
in Chromium, freed sessions) is in ``test_viewer_limits.py``.
"""

from __future__ import annotations

from monitor.dashboard.feed import Feed
from monitor.dashboard.seats import Seats
from monitor.hub import Hub, HubMessage
from tests.dashboard.test_pure import _scalars, _Scheduler


def test_held_feed_schedules_nothing_and_flushes_what_coalesced_on_resume() -> None:
    hub, scheduler = Hub(), _Scheduler()
    delivered: list[list[HubMessage]] = []
    ready = [False]
    feed = Feed(hub, scheduler, delivered.append, min_interval=0.0, ready=lambda: ready[0])
    feed.follow(["a"])
    hub.publish(_scalars("a", 1, [0]))
    hub.publish(_scalars("a", 2, [1]))
    assert not scheduler.next_tick and not scheduler.timeouts and feed.held
    feed.resume()
    assert not scheduler.next_tick, "still not ready: resume must not schedule"
    ready[0] = True
    feed.resume()
    scheduler.next_tick.pop()()
    assert [len(batch) for batch in delivered] == [2] and not feed.held


def test_feed_that_turns_unready_before_its_flush_keeps_the_messages() -> None:
    hub, scheduler = Hub(), _Scheduler()
    delivered: list[list[HubMessage]] = []
    ready = [True]
    feed = Feed(hub, scheduler, delivered.append, min_interval=0.0, ready=lambda: ready[0])
    feed.follow(["a"])
    hub.publish(_scalars("a", 1, [0]))
    ready[0] = False
    scheduler.next_tick.pop()()
    hub.publish(_scalars("a", 2, [1]))
    assert not delivered and feed.held and not scheduler.next_tick
    ready[0] = True
    feed.resume()
    scheduler.next_tick.pop()()
    assert [len(batch) for batch in delivered] == [2]


def test_seats_refuse_beyond_the_limit_and_free_on_release() -> None:
    refusals: list[int] = []
    seats = Seats(2, on_refused=lambda: refusals.append(1))
    first, second = seats.take(), seats.take()
    assert first is not None and second is not None and seats.taken == 2
    assert seats.take() is None and seats.refused == 1 and refusals == [1]
    first.release()
    first.release()
    assert seats.taken == 1, "a seat is given back once"
    assert seats.take() is not None and seats.taken == 2
