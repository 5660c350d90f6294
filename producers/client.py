"""The public producer: ``Monitor`` validates each call and queues it for the sender.

Every method checks its own arguments on the caller's thread and raises a
``TypeError`` or ``ValueError`` naming the bad argument; then it copies what
the caller passed, queues it and returns. Histogramming, encoding and all I/O
happen on the sender's background thread (``producers.sender``), which never
raises into training: a dead or absent server costs one warning line.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import secrets
import socket
import sys
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from monitor.wire import MAX_NAME_LENGTH, RUN_ID_PATTERN, DataMessage, Finish, Graph, GraphNode, Hello
from monitor.wire.limits import MAX_NAMES
from producers import items
from producers.sender import Sender
from producers.spool import DeliveryReport, FrameBuffer
from producers.stats import ScalarItem

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:5006"
MIB = 1024 * 1024
_ATEXIT_TIMEOUT = 2.0


class Monitor:
    """Streams one training run to a labscreen server without ever slowing it down.

    Calls return in microseconds: they validate, copy and enqueue. A
    background daemon thread batches, summarises, encodes and sends, keeps
    unacknowledged frames (in memory, then in a bounded spool file) and
    resends them after a reconnect. An unfinished Monitor is finished at
    interpreter exit with a 2 s timeout.

    Thread safety: methods may be called from any thread; automatic step
    numbers are only well defined when ``log`` is called from one thread.
    A process forked from the one that opened the Monitor (a data-loader
    worker) sends nothing for it: its calls are ignored with one warning,
    and its ``finish`` returns at once.

    Attributes:
        url: The ingest websocket address, e.g. ``ws://127.0.0.1:5006/ws/ingest``.
        run: The run id.
        name: The run's human name ("" when not given).
        stream: This instance's stream id; seqs count per (run, stream) from 1.
    """

    def __init__(  # noqa: PLR0917 - the documented positional API
        self,
        url: str | None = None,
        run: str | None = None,
        name: str | None = None,
        project: str | None = None,
        config: Mapping[str, Any] | None = None,
        token: str | None = None,
        *,
        spool_dir: str | os.PathLike[str] | None = None,
        max_buffer_bytes: int = 64 * MIB,
        max_spool_bytes: int = 1024 * MIB,
        flush_interval: float = 0.05,
        framework: str = "python",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """Start monitoring a run; connecting happens in the background.

        Args:
            url: Server address (``http(s)://host:port``); falls back to
                ``LABSCREEN_URL``, then ``http://127.0.0.1:5006``.
            run: Run id (1-200 of ``[A-Za-z0-9._-]``); generated from the
                name, the time and a random suffix when None.
            name: Human name of the run.
            project: Project the run belongs to.
            config: Hyper-parameters: a JSON-serialisable mapping.
            token: Bearer token; falls back to ``LABSCREEN_TOKEN``.
            spool_dir: Where unacknowledged frames spill; a private temporary
                directory when None.
            max_buffer_bytes: Unacknowledged frame bytes kept in memory.
            max_spool_bytes: Unacknowledged frame bytes kept on disk.
            flush_interval: Seconds over which items are coalesced under load;
                an item queued when idle is sent at once.
            framework: Framework name shown with the run.
            rank: This worker's rank in a distributed run.
            world_size: Number of workers in the run.

        Raises:
            TypeError: an argument has the wrong type.
            ValueError: an argument has a bad value; the message names it.
        """
        self.url = items.ws_endpoint(url or os.environ.get("LABSCREEN_URL") or DEFAULT_URL)
        self.name = items.name(name, "name", empty=True) if name is not None else ""
        self.run = items.run_id(run) if run is not None else _generate_run_id(self.name)
        self.stream = uuid.uuid4().hex
        items.count(max_buffer_bytes, "max_buffer_bytes", 0)
        items.count(max_spool_bytes, "max_spool_bytes", 0)
        if not isinstance(flush_interval, (int, float)) or not 0 <= flush_interval <= 60:
            raise ValueError(f"flush_interval must be a number of seconds in [0, 60], got {flush_interval!r}")
        world_size = items.count(world_size, "world_size", 1, 1_000_000)
        hello = Hello(
            run=self.run,
            stream=self.stream,
            name=self.name,
            project=items.name(project, "project", empty=True) if project is not None else "",
            config=_config(config),
            host=socket.gethostname()[:MAX_NAME_LENGTH],
            framework=items.name(framework, "framework", empty=True),
            rank=items.count(rank, "rank", 0, world_size - 1),
            world_size=world_size,
        )
        buffer = FrameBuffer(
            max_buffer_bytes, max_spool_bytes, Path(spool_dir) if spool_dir else None, f"labscreen-{self.stream}"
        )
        token = token if token is not None else os.environ.get("LABSCREEN_TOKEN") or None
        self._sender = Sender(self.url, token, hello, buffer, float(flush_interval))
        self._step = -1
        self._report: DeliveryReport | None = None
        self._ignored_warned = False
        self._pid = os.getpid()
        self._sender.start()
        atexit.register(self._atexit)
        _OPEN.add(self)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish("crashed" if exc_type is not None else "finished")

    @property
    def finished(self) -> bool:
        """Whether ``finish`` has been called."""
        return self._report is not None

    def delivery(self) -> DeliveryReport:
        """What has become of the run's frames so far; after ``finish``, its final report."""
        return self._report or self._sender.snapshot()

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Queue scalar metrics (loss, accuracy, learning rate...) at one step.

        Args:
            metrics: Series name to number; NaN and infinities are allowed.
            step: Training step; None means one more than the last ``log``.

        Raises:
            TypeError: ``metrics`` is not a mapping, a name is not a string or
                a value is not a number.
            ValueError: a name is empty or too long, too many metrics, or a
                bad ``step``.
        """
        if self._ignored("log"):
            return
        if not isinstance(metrics, Mapping):
            raise TypeError(f"metrics must be a mapping of name to number, got {type(metrics).__name__}")
        if len(metrics) > MAX_NAMES:
            raise ValueError(f"metrics has {len(metrics)} entries, over the limit of {MAX_NAMES} per call")
        names, values = items.metrics(metrics)
        self._step = self._step + 1 if step is None else items.step(step)
        self._sender.submit(ScalarItem(self._step, time.time(), names, values))

    def histogram(self, name: str, values: Any, step: int | None = None, bins: int = 64) -> None:
        """Queue a histogram of a tensor (weights, activations, gradients).

        Args:
            name: Series name, e.g. ``"dense/kernel"``.
            values: Any numeric array (binned in the background), or a pair
                ``(edges, counts)`` of 1-D arrays already binned.
            step: Training step; None means the last logged step.
            bins: Number of equal-width bins for raw values.

        Raises:
            TypeError: ``values`` is not numeric.
            ValueError: bad ``name``, ``bins`` or ``step``, or ``edges`` and
                ``counts`` that do not fit together.
        """
        if self._ignored("histogram"):
            return
        name = items.name(name, "name")
        bins = items.count(bins, "bins", 1, 10_000)
        self._sender.submit(items.histogram_builder(name, self._current(step), time.time(), values, bins))

    def predictions(  # noqa: PLR0917 - the documented positional API
        self,
        name: str,
        y_true: Any,
        outputs: Any,
        step: int | None = None,
        classes: Sequence[str] | None = None,
        embedding: Any = None,
        task: str | None = None,
    ) -> None:
        """Queue model outputs on a fixed sample (class probabilities or regression outputs).

        Args:
            name: Name of the sample, e.g. ``"validation"``.
            y_true: Class indices (n,), one-hot labels (n, c), or regression
                targets shaped like ``outputs``.
            outputs: Class probabilities (n, c) or regression outputs (n,) or (n, d).
            step: Training step; None means the last logged step.
            classes: Class names, one per output column.
            embedding: Optional (n, 2) coordinates of the samples.
            task: ``"classification"`` or ``"regression"``; None infers it:
                2-D outputs with several columns and integer or one-hot
                ``y_true`` are a classification.

        Raises:
            TypeError: an array is not numeric.
            ValueError: shapes that do not fit together, labels outside the
                classes, a bad ``task``, ``classes`` or ``step``.
        """
        if self._ignored("predictions"):
            return
        name = items.name(name, "name")
        step, wall = self._current(step), time.time()
        builder = items.predictions_builder(
            name, step, wall, y_true=y_true, outputs=outputs, classes=classes, embedding=embedding, task=task
        )
        self._sender.submit(builder)

    def graph(self, nodes: Iterable[Mapping[str, Any] | GraphNode], edges: Iterable[Sequence[str]]) -> None:
        """Queue the model's structure: layers as nodes, connections as (src, dst) names.

        Args:
            nodes: ``GraphNode`` objects or dicts with ``name``, ``type``,
                ``output_shape``, ``params`` and ``trainable``.
            edges: Pairs of node names.

        Raises:
            TypeError: a node or edge has the wrong type.
            ValueError: a missing, duplicate or too long name, an unknown
                key, an edge naming an unknown node, or too many of either.
        """
        if self._ignored("graph"):
            return
        node_list, edge_list = items.graph(nodes, edges)
        self._sender.submit(lambda run, seq: Graph(run, seq, node_list, edge_list))

    def data_summary(  # noqa: PLR0917 - the documented positional API
        self,
        features: Any,
        labels: Any = None,
        feature_names: Sequence[str] | None = None,
        label_names: Sequence[str] | None = None,
        name: str = "train",
        bins: int = 32,
        sample_size: int = 500,
    ) -> None:
        """Queue a summary of a data set: per-feature histograms, label counts, a sample.

        Args:
            features: Numeric (n, d) array; extra axes are flattened.
            labels: Class indices (n,) or one-hot (n, c), or None.
            feature_names: One name per feature column (default ``f0``, ``f1``...).
            label_names: One name per class (default ``"0"``, ``"1"``...).
            name: Name of the data set.
            bins: Bins per feature histogram.
            sample_size: Rows of the random sample sent for scatter plots.

        Raises:
            TypeError: an array is not numeric.
            ValueError: shapes or names that do not fit together, or a bad
                ``bins``, ``sample_size`` or ``name``.
        """
        if self._ignored("data_summary"):
            return
        data = items.data_input(
            items.name(name, "name"),
            max(self._step, 0),
            time.time(),
            features=features,
            labels=labels,
            feature_names=feature_names,
            label_names=label_names,
            bins=bins,
            sample_size=sample_size,
        )
        self._sender.submit(items.data_builder(data))

    def event(self, text: str, level: str = "info", step: int | None = None) -> None:
        """Queue a line of text for the dashboard (NaN detected, checkpoint saved).

        Args:
            text: The line (1 to ``MAX_TEXT_LENGTH`` characters).
            level: ``"info"``, ``"warning"`` or ``"error"``.
            step: Training step it happened at; None means the last logged step.

        Raises:
            TypeError: ``text`` is not a string.
            ValueError: ``text`` is empty or too long, ``level`` is not one
                of ``"info"``, ``"warning"``, ``"error"``, or bad ``step``.
        """
        if self._ignored("event"):
            return
        message, event_level = items.text(text), items.level(level)
        at = max(self._step, 0) if step is None else items.step(step)
        self._sender.submit(items.event_builder(message, event_level, at, time.time()))

    def finish(self, status: str = "finished", timeout: float = 10.0) -> DeliveryReport:
        """Mark the run ended and wait up to ``timeout`` seconds for delivery.

        Returns after every frame is acknowledged or refused, or after
        ``timeout``, whichever comes first; then the background thread stops
        (within a quarter of a second; one still busy framing a huge
        histogram stops at its next step, counting the calls it had not
        framed as ``unframed``) and the spool files are removed. A second
        call logs a warning and returns the first report.

        Args:
            status: ``"finished"`` or ``"crashed"``.
            timeout: Longest wait in seconds.

        Returns:
            What became of the run's frames; undelivered frames are also
            logged as a warning.

        Raises:
            ValueError: a bad ``status`` or ``timeout``.
        """
        if self._report is not None:
            self._ignored("finish")
            return self._report
        if status not in ("finished", "crashed"):
            raise ValueError(f"status must be 'finished' or 'crashed', got {status!r:.80}")
        if not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        wall = time.time()
        self._sender.submit(lambda run, seq: _finish(run, seq, wall, status))
        self._report = self._sender.close(float(timeout))
        atexit.unregister(self._atexit)
        self._log_report(self._report)
        return self._report

    def _ignored(self, method: str) -> bool:
        if self._report is None:
            return False
        if not self._ignored_warned:
            self._ignored_warned = True
            if os.getpid() != self._pid:
                logger.warning(
                    "labscreen: run %s belongs to process %d; this process, forked from it, sends nothing for it "
                    "(%s() and later calls are ignored; open a Monitor here to monitor it)",
                    self.run,
                    self._pid,
                    method,
                )
            else:
                logger.warning("labscreen: run %s is finished; %s() and later calls are ignored", self.run, method)
        return True

    def _forked(self) -> None:
        """In a forked child: the sender's thread did not come along, so nothing here could be sent."""
        if self._report is None:
            self._report = DeliveryReport(self.run, 0, 0, 0, 0, 0, 0)
        atexit.unregister(self._atexit)

    def _current(self, step: int | None) -> int:
        return max(self._step, 0) if step is None else items.step(step)

    def _log_report(self, report: DeliveryReport) -> None:
        if report.discarded:
            logger.warning(
                "labscreen: run %s: %d calls were discarded before sending because they arrived faster "
                "than the background thread could frame them",
                self.run,
                report.discarded,
            )
        if report.unframed:
            logger.warning(
                "labscreen: run %s: %d calls were still being framed (a large histogram takes a while) when "
                "finish() stopped waiting; they are discarded",
                self.run,
                report.unframed,
            )
        if not report.undelivered and not report.dropped:
            if not report.unframed:
                logger.info("labscreen: run %s delivered: %s", self.run, report)
            return
        # A warning even when the server was never reached: the first one said frames are kept, now they are gone.
        logger.warning(
            "labscreen: run %s: %d of %d frames were not delivered to %s%s%s; they are discarded",
            self.run,
            report.undelivered + report.dropped,
            report.frames,
            self.url,
            self._sender.never_linked,
            f" ({report.dropped} dropped while it was unreachable)" if report.dropped else "",
        )

    def _atexit(self) -> None:
        crashed = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        try:
            self.finish("crashed" if crashed is not None else "finished", timeout=_ATEXIT_TIMEOUT)
        except Exception:
            logger.debug("labscreen: finishing at exit failed", exc_info=True)


_OPEN: weakref.WeakSet[Monitor] = weakref.WeakSet()
"""Every Monitor of this process, for the fork hook."""


def _after_fork_in_child() -> None:
    # Without this a child's calls queued for a thread that does not exist in it, and its finish()
    # waited out its timeout before reporting the parent's frames as its own.
    for monitor in list(_OPEN):
        monitor._forked()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _finish(run: str, seq: int, wall: float, status: str) -> DataMessage:
    return Finish(run, seq, wall, "crashed" if status == "crashed" else "finished")


def _generate_run_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:120] or "run"
    run = f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    return run if RUN_ID_PATTERN.match(run) else f"run-{run}"[:200]


def _config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    try:
        copied = json.loads(json.dumps(dict(config), allow_nan=False, default=_jsonable))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config must be JSON-serialisable with finite numbers: {exc}") from exc
    items.json_depth(copied)
    return dict(copied)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, type)):
        return str(value)
    raise TypeError(f"{type(value).__name__} value {value!r:.60} is not JSON-serialisable")
