"""Events the dashboard derives from the data: first NaN/Inf of a series, a run going stale and coming back.

Unit tests of ``EventDeriver`` and the events strip, then the real thing: a
server with a one-second stale time, a real ``Monitor``, the strip in Chromium.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from monitor.dashboard.derived_events import DERIVED_SEQ, EventDeriver, same_as_derived
from monitor.dashboard.history import RunHistory
from monitor.store.base import RunInfo, ScalarSeries
from monitor.wire import Event, Scalars
from producers.client import Monitor
from tests.dashboard.conftest import Viewer
from tests.serving import ServerThread


def _scalars(run: str, names: tuple[str, ...], steps: list[int], index: list[int], values: list[float]) -> Scalars:
    n = len(steps)
    return Scalars(run, 1, names, np.array(steps), np.arange(n, dtype=np.float64), np.array(index), np.array(values))


def _info(run: str, last_seen: float, last_step: int | None = 7) -> RunInfo:
    return RunInfo(run, run, "", "running", 0.0, last_seen, last_step=last_step)


def test_the_first_nonfinite_value_of_each_series_is_an_event_once() -> None:
    deriver = EventDeriver(stale_after=60)
    first = _scalars("r", ("loss", "acc"), [1, 1, 2, 2], [0, 1, 0, 1], [0.5, np.inf, np.nan, 0.9])
    events = deriver.from_scalars([first])
    assert [(e.step, e.text, e.level, e.seq) for e in events] == [
        (2, "loss is nan at step 2", "error", DERIVED_SEQ),
        (1, "acc is inf at step 1", "error", DERIVED_SEQ),
    ]
    again = _scalars("r", ("loss", "lr"), [3, 3], [0, 1], [np.nan, -np.inf])
    assert [e.text for e in deriver.from_scalars([again])] == ["lr is -inf at step 3"]  # loss was reported
    deriver.reset()
    history = RunHistory(
        run="r", scalars={"loss": ScalarSeries("r", "loss", np.array([5, 6]), np.zeros(2), np.array([1.0, np.nan]))}
    )
    assert [e.text for e in deriver.from_history(history)] == ["loss is nan at step 6"]
    assert deriver.from_scalars([_scalars("r", ("ok",), [9], [0], [1.0])]) == []


def test_a_run_going_stale_and_sending_again_are_events_once_each() -> None:
    deriver = EventDeriver(stale_after=120)
    assert deriver.from_status(_info("r", 1000.0), "running", 1100.0) == []
    (stale,) = deriver.from_status(_info("r", 1000.0), "stale", 1121.0)
    assert (stale.text, stale.level, stale.wall, stale.step) == ("no data for 2m 00s: stale", "warning", 1120.0, 7)
    assert deriver.from_status(_info("r", 1000.0), "stale", 1200.0) == []  # still the same silence
    (back,) = deriver.from_status(_info("r", 1450.0), "running", 1450.5)
    assert (back.text, back.level, back.wall) == ("data again after 7m 30s", "info", 1450.0)
    deriver.from_status(_info("r", 1450.0), "stale", 1600.0)
    assert deriver.from_status(_info("r", 1450.0), "finished", 1700.0) == []  # the run's own event says so
    assert deriver.from_status(None, None, 1700.0) == []


@pytest.mark.parametrize("server", [{"stale_after": 1.0}], indirect=True)  # runs go stale after 1 s
def test_the_strip_shows_nan_stale_and_back_and_the_producers_own_nan_event_once(
    server: ServerThread, viewers: Callable[..., Viewer]
) -> None:
    monitor = Monitor(url=server.url, run="quiet", name="quiet", flush_interval=0.01)
    try:
        monitor.log({"loss": 1.0, "val_loss": float("nan")}, step=1)
        monitor.log({"loss": float("nan")}, step=4)
        monitor.event("loss is nan at step 4 - stopping training", level="error", step=4)  # as MonitorCallback
        viewer = viewers(server.url + "/?run=quiet")
        viewer.wait_text("events", "val_loss is nan at step 1")
        text = viewer.wait_text("events", "no data for 1s: stale")  # nothing sent for a second
        assert text.count("loss is nan at step 4") == 1 and "stopping training" in text
        monitor.log({"loss": 0.5}, step=5)
        viewer.wait_text("events", "data again after")
        reopened = viewers(server.url + "/?run=quiet")  # a page opened later derives them from history
        again = reopened.wait_text("events", "val_loss is nan at step 1")
        assert again.count("loss is nan at step 4") == 1
    finally:
        monitor.finish(timeout=5)


def test_the_producers_nan_event_covers_the_derived_one_at_the_same_or_a_later_step() -> None:
    derived = Event("r", DERIVED_SEQ, 20, 1.0, "error", "loss is nan at step 20")  # sent every 10 batches
    keras = Event("r", 7, 13, 1.0, "error", "loss is nan at step 13 - stopping training")  # checked every batch
    assert same_as_derived(keras, derived)
    assert not same_as_derived(keras, Event("r", DERIVED_SEQ, 20, 1.0, "error", "val_loss is nan at step 20"))
    assert not same_as_derived(keras, Event("r", DERIVED_SEQ, 12, 1.0, "error", "loss is nan at step 12"))
    assert not same_as_derived(keras, Event("other", DERIVED_SEQ, 20, 1.0, "error", "loss is nan at step 20"))
