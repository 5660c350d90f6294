"""Turning what the training thread copied into monitor calls, on a worker thread.

The callback's hooks build small immutable snapshots (a batch's logs, copies
of the weights, gradients or model outputs) and hand them to a
``SnapshotWorker``; the worker thread computes learning rates, norms, update
ratios, class probabilities and PCA embeddings and calls the ``Monitor``. The
training thread never waits for it.

Heavy snapshots (weights, gradients, predictions) are bounded *before* they
are taken: ``offer`` takes one only when fewer than ``MAX_PENDING_PER_KIND``
of its kind wait, and otherwise skips it without copying anything. A snapshot
once taken is never dropped, and every skip is recorded, so the
``SnapshotReport`` says exactly which steps were sent and which skipped.

Invariants: jobs are handled in the order they were put; at most
``MAX_PENDING_PER_KIND`` snapshots of each heavy kind wait at a time; a
failing job is logged once per kind, recorded, and never stops the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from producers.embedding import pca_2d
from producers.keras_run import learning_rates

logger = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
MAX_PENDING_PER_KIND = 2
"""Heavy snapshots of one kind that may wait for the worker; beyond, the next one is skipped."""
_PACE_SECONDS = 0.05


class MonitorLike(Protocol):
    """The part of ``producers.Monitor`` the worker calls."""

    def log(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def histogram(self, name: str, values: Any, step: int | None = None, bins: int = 64) -> None: ...

    def predictions(
        self,
        name: str,
        y_true: Any,
        outputs: Any,
        *,
        step: int | None = None,
        classes: Any = None,
        embedding: Any = None,
        task: Any = None,
    ) -> None: ...


@dataclass(frozen=True)
class BatchLogs:
    """One batch's logs; ``seconds`` is its wall time, ``samples`` its batch size if known."""

    step: int
    epoch: int
    logs: dict[str, float]
    seconds: float | None
    samples: int | None


@dataclass(frozen=True, eq=False)
class Tensors:
    """Copies of named tensors at one step: ``kind`` is ``"weights"`` or ``"gradients"``."""

    kind: str
    step: int
    names: list[str]
    values: list[Array]


@dataclass(frozen=True, eq=False)
class Outputs:
    """Model outputs on the monitor sample at one step, plus the embedding layer's activations."""

    step: int
    y_true: Array
    outputs: Array
    activations: Array | None


Snapshot = Tensors | Outputs


@dataclass
class SnapshotReport:
    """Steps of each heavy kind (``weights``, ``gradients``, ``predictions``) by what became of them.

    Attributes:
        sent: Handed to the ``Monitor`` (which then owns their delivery).
        skipped: Not taken, because the worker still had
            ``MAX_PENDING_PER_KIND`` of that kind waiting.
        failed: Taken, but computing or queueing them raised (logged).
        unsent: Taken, but the worker had not handled them when it was
            closed (its ``close`` timed out).
    """

    sent: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    failed: dict[str, list[int]] = field(default_factory=dict)
    unsent: dict[str, list[int]] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        """Total steps, over all kinds, with this outcome (``"skipped"``, ``"failed"``...)."""
        steps: dict[str, list[int]] = getattr(self, outcome)
        return sum(len(v) for v in steps.values())

    def describe(self, outcome: str) -> str:
        """E.g. ``"2 weights (steps 8, 10), 1 predictions (step 8)"``; "" when none."""
        parts = []
        for kind, steps in sorted(getattr(self, outcome).items()):
            if steps:
                shown = ", ".join(map(str, steps[:10])) + (", ..." if len(steps) > 10 else "")
                parts.append(f"{len(steps)} {kind} (step{'s' if len(steps) > 1 else ''} {shown})")
        return ", ".join(parts)


@dataclass(frozen=True)
class PredictionSpec:
    """How to read the monitor sample's outputs: task, class names, logits or not."""

    task: str
    classes: tuple[str, ...]
    from_logits: bool


class SnapshotWorker:
    """A daemon thread that turns snapshots into monitor calls.

    Thread safety: ``put`` and ``offer`` are called from the training thread
    (one thread); ``close`` from that thread too; ``report`` is complete once
    ``close`` returned.
    """

    def __init__(self, monitor: MonitorLike, optimizer: Any, predictions: PredictionSpec | None, bins: int) -> None:
        self._monitor = monitor
        self._optimizer = optimizer
        self._spec = predictions
        self._bins = bins
        self._queue: queue.SimpleQueue[BatchLogs | Snapshot | None] = queue.SimpleQueue()
        self._room: dict[str, threading.Semaphore] = {}
        self._pending: dict[int, tuple[str, int]] = {}
        self._pending_lock = threading.Lock()
        self.report = SnapshotReport()
        self._previous: dict[str, Array] = {}
        self._failed: set[str] = set()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labscreen-keras", daemon=True)
        self._thread.start()

    def put(self, job: BatchLogs) -> None:
        """Hand over one batch's logs (small; never refused)."""
        self._queue.put(job)

    def offer(self, kind: str, step: int, take: Callable[[], Snapshot]) -> bool:
        """Take a heavy snapshot with ``take()`` and hand it over, if there is room for one more of ``kind``.

        With ``MAX_PENDING_PER_KIND`` of ``kind`` still waiting, ``take`` is
        not called (the training thread copies nothing), the step is recorded
        in ``report.skipped`` and False is returned. A snapshot once taken is
        always handled.

        Raises:
            Exception: whatever ``take`` raised (the room is given back).
        """
        room = self._room.setdefault(kind, threading.Semaphore(MAX_PENDING_PER_KIND))
        if not room.acquire(blocking=False):
            self.report.skipped.setdefault(kind, []).append(step)
            logger.debug("labscreen worker is behind; skipped the %s snapshot at step %d", kind, step)
            return False
        try:
            job = take()
        except BaseException:
            room.release()
            raise
        with self._pending_lock:
            self._pending[id(job)] = (kind, step)
        self._queue.put(job)
        return True

    def close(self, timeout: float = 30.0) -> SnapshotReport:
        """Handle everything handed over so far, then stop the thread (waits at most ``timeout``).

        Returns:
            The report; snapshots still waiting after ``timeout`` are in its
            ``unsent``, and the worker drops them instead of sending them late.
        """
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout)
        with self._pending_lock:
            for kind, step in sorted(self._pending.values(), key=lambda p: p[1]):
                self.report.unsent.setdefault(kind, []).append(step)
            self._pending.clear()
        return self.report

    def _run(self) -> None:
        while True:
            jobs = [self._queue.get()]
            while True:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in jobs
            self._handle([j for j in jobs if j is not None])
            if done:
                return
            self._closing.wait(_PACE_SECONDS)

    def _handle(self, jobs: list[BatchLogs | Snapshot]) -> None:
        batches = [j for j in jobs if isinstance(j, BatchLogs)]
        if batches:
            self._guard("scalars", self._scalars, batches)
        for job in jobs:
            if not isinstance(job, BatchLogs):
                self._handle_snapshot(job)

    def _handle_snapshot(self, job: Snapshot) -> None:
        with self._pending_lock:
            claimed = self._pending.get(id(job))
        if claimed is None:  # close() timed out and reported it unsent: do not send it late
            return
        kind, step = claimed
        if isinstance(job, Tensors):
            ok = self._guard(kind, self._tensors, job)
        else:
            ok = self._guard(kind, self._outputs, job)
        with self._pending_lock:
            if self._pending.pop(id(job), None) is not None:
                (self.report.sent if ok else self.report.failed).setdefault(kind, []).append(step)
        self._room[kind].release()

    def _guard(self, kind: str, handler: Any, job: Any) -> bool:
        try:
            handler(job)
        except Exception:
            if kind not in self._failed:
                self._failed.add(kind)
                logger.warning("labscreen could not send %s; continuing without them", kind, exc_info=True)
            return False
        return True

    def _scalars(self, batches: list[BatchLogs]) -> None:
        """Log each batch's numeric logs (Keras leaves unconvertible values as they are; skip those)."""
        rates = learning_rates(self._optimizer, [b.step for b in batches])
        for batch, rate in zip(batches, rates, strict=True):
            metrics = {k: v for k, v in batch.logs.items() if isinstance(v, (int, float))}
            metrics["epoch"] = float(batch.epoch)
            if rate is not None:
                metrics["learning_rate"] = rate
            if batch.seconds:
                metrics["step_time"] = batch.seconds
                if batch.samples:
                    metrics["samples_per_sec"] = batch.samples / batch.seconds
            self._monitor.log(metrics, step=batch.step)

    def _tensors(self, job: Tensors) -> None:
        metrics: dict[str, float] = {}
        squares = 0.0
        for name, value in zip(job.names, job.values, strict=True):
            self._monitor.histogram(f"{job.kind}/{name}", value, step=job.step, bins=self._bins)
            norm = float(np.linalg.norm(value.ravel()))
            squares += norm * norm
            metrics[f"{job.kind}_norm/{name}"] = norm
            if job.kind == "weights":
                previous = self._previous.get(name)
                if previous is not None and previous.shape == value.shape and norm > 0:
                    change = float(np.linalg.norm((value - previous).ravel()))
                    metrics[f"update_ratio/{name}"] = change / norm
                self._previous[name] = value
        metrics[f"{job.kind}_norm/global"] = float(np.sqrt(squares))
        self._monitor.log(metrics, step=job.step)

    def _outputs(self, job: Outputs) -> None:
        assert self._spec is not None
        outputs, y_true = job.outputs.astype(np.float64), job.y_true
        if self._spec.task == "classification":
            outputs = probabilities(outputs, self._spec.from_logits)
        elif outputs.ndim == 2 and outputs.shape[1] == 1 and y_true.ndim == 1:
            outputs = outputs[:, 0]
        embedding = pca_2d(job.activations) if job.activations is not None else None
        self._monitor.predictions(
            "predictions", y_true, outputs, step=job.step, classes=self._spec.classes or None,
            embedding=embedding, task=self._spec.task,
        )  # fmt: skip


def probabilities(outputs: Array, from_logits: bool) -> Array:
    """Class probabilities (n, c) from a classifier's outputs.

    A single column is a binary (sigmoid) output and becomes ``[1 - p, p]``;
    with ``from_logits`` columns are passed through sigmoid or softmax first.
    """
    out = outputs.reshape(len(outputs), -1)
    if out.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-out[:, 0])) if from_logits else out[:, 0]
        return np.stack([1.0 - p, p], axis=1)
    if from_logits:
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        out = shifted / shifted.sum(axis=1, keepdims=True)
    return out
