"""Turning what the training thread copied into monitor calls, on a worker thread.

The callback's hooks build small immutable snapshots (a batch's logs, copies
of the weights, gradients or model outputs) and ``SnapshotWorker.put`` them;
the worker thread computes learning rates, norms, update ratios, class
probabilities and PCA embeddings and calls the ``Monitor``. The training
thread never waits for it.

Invariants: jobs are handled in the order they were put; at most
``MAX_PENDING_HEAVY`` weight/gradient/prediction snapshots wait at a time
(more are dropped with a debug log, so a slow worker cannot grow memory);
a failing job is logged once per kind and never stops the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from producers.embedding import pca_2d
from producers.keras_run import learning_rates

logger = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
MAX_PENDING_HEAVY = 4
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


@dataclass(frozen=True)
class PredictionSpec:
    """How to read the monitor sample's outputs: task, class names, logits or not."""

    task: str
    classes: tuple[str, ...]
    from_logits: bool


class SnapshotWorker:
    """A daemon thread that turns snapshots into monitor calls.

    Thread safety: ``put`` may be called from any thread; ``close`` from one.
    """

    def __init__(self, monitor: MonitorLike, optimizer: Any, predictions: PredictionSpec | None, bins: int) -> None:
        self._monitor = monitor
        self._optimizer = optimizer
        self._spec = predictions
        self._bins = bins
        self._queue: queue.SimpleQueue[BatchLogs | Tensors | Outputs | None] = queue.SimpleQueue()
        self._heavy = threading.Semaphore(MAX_PENDING_HEAVY)
        self._previous: dict[str, Array] = {}
        self._failed: set[str] = set()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labscreen-keras", daemon=True)
        self._thread.start()

    def put(self, job: BatchLogs | Tensors | Outputs) -> bool:
        """Hand a snapshot over; False if a heavy one was dropped because the worker is behind."""
        if not isinstance(job, BatchLogs) and not self._heavy.acquire(blocking=False):
            logger.debug("labscreen worker is behind; dropped %s snapshot at step %d", type(job).__name__, job.step)
            return False
        self._queue.put(job)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Handle everything put so far, then stop the thread (waits at most ``timeout``)."""
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout)

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

    def _handle(self, jobs: list[BatchLogs | Tensors | Outputs]) -> None:
        batches = [j for j in jobs if isinstance(j, BatchLogs)]
        if batches:
            self._guard("scalars", self._scalars, batches)
        for job in jobs:
            if isinstance(job, Tensors):
                self._guard(job.kind, self._tensors, job)
            elif isinstance(job, Outputs):
                self._guard("predictions", self._outputs, job)
            if not isinstance(job, BatchLogs):
                self._heavy.release()

    def _guard(self, kind: str, handler: Any, job: Any) -> None:
        try:
            handler(job)
        except Exception:
            if kind not in self._failed:
                self._failed.add(kind)
                logger.warning("labscreen could not send %s; continuing without them", kind, exc_info=True)

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
