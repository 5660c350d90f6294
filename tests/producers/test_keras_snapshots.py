"""``SnapshotWorker``'s bounded handoff: a busy worker makes the callback skip, never drop, and says so.

The worker's monitor here is a recorder whose ``histogram`` can be held
shut, which is how a worker that fell behind (a loaded machine, a big
model) is made deterministic. Everything else is the real worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from producers.keras_snapshots import MAX_PENDING_PER_KIND, SnapshotWorker, Tensors

pytestmark = pytest.mark.tf  # the worker imports Keras (learning-rate schedules)


class GatedRecorder:
    """A ``MonitorLike`` that records histogram steps; ``histogram`` waits until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.histograms: list[int] = []

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def histogram(self, name: str, values: Any, step: int | None = None, bins: int = 64) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        assert step is not None
        self.histograms.append(step)

    def predictions(self, name: str, y_true: Any, outputs: Any, **kwargs: Any) -> None:
        raise AssertionError("no predictions in these tests")


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        threading.Event().wait(0.01)


@pytest.fixture
def recorder() -> Iterator[GatedRecorder]:
    recorder = GatedRecorder()
    yield recorder
    recorder.gate.set()  # never leave the worker thread blocked


def offer(worker: SnapshotWorker, step: int, taken: list[int]) -> bool:
    def take() -> Tensors:
        taken.append(step)
        return Tensors("weights", step, ["w"], [np.full(4, float(step))])

    return worker.offer("weights", step, take)


def test_a_busy_worker_skips_the_next_snapshot_without_taking_it(recorder: GatedRecorder) -> None:
    worker = SnapshotWorker(recorder, optimizer=None, predictions=None, bins=8)
    taken: list[int] = []
    accepted = [offer(worker, step, taken) for step in range(1, 6)]
    assert accepted == [True] * MAX_PENDING_PER_KIND + [False] * (5 - MAX_PENDING_PER_KIND)
    assert taken == [1, 2], "a skipped snapshot must not even be copied on the training thread"

    recorder.gate.set()
    wait_until(lambda: len(worker.report.sent.get("weights", [])) == 2)
    assert offer(worker, 6, taken), "room frees once the worker caught up"
    report = worker.close()
    assert report.sent == {"weights": [1, 2, 6]} and recorder.histograms == [1, 2, 6]
    assert report.skipped == {"weights": [3, 4, 5]}
    assert report.describe("skipped") == "3 weights (steps 3, 4, 5)"
    assert not report.failed and not report.unsent


def test_snapshots_still_waiting_when_close_times_out_are_reported_unsent(recorder: GatedRecorder) -> None:
    worker = SnapshotWorker(recorder, optimizer=None, predictions=None, bins=8)
    assert offer(worker, 1, []) and offer(worker, 2, [])
    report = worker.close(timeout=0.2)
    assert report.unsent == {"weights": [1, 2]} and not report.sent
    recorder.gate.set()
    worker._thread.join(10)
    assert report.unsent == {"weights": [1, 2]} and not report.sent, "nothing is counted twice or sent late"
    assert recorder.histograms == [1], "the snapshot in progress finished; the waiting one was not sent late"
