"""``MonitorCallback``: one line to stream a Keras 3 ``fit`` to labscreen.

``model.fit(..., callbacks=[MonitorCallback("http://127.0.0.1:5006", name="mnist-mlp")])``

On the training thread the callback only reads what must be read while the
weights are stable (the logs Keras already converted, copies of variables,
the monitor sample's outputs) and hands it to a worker thread
(``producers.keras_snapshots``); learning rates, histograms, norms, PCA,
encoding and sending happen there and in the ``Monitor``'s sender thread.

How a crash is noticed (Keras calls ``on_train_end`` only when ``fit``
completes): an exception raised inside the train step passes through a thin
guard the callback wraps around ``model.train_function`` and finishes the run
as ``crashed`` before it propagates (``KeyboardInterrupt`` counts as a
deliberate stop: ``finished``, with an "interrupted" event); ``with MonitorCallback(...) as cb:``
finishes it as crashed for an exception anywhere in the block; a process
that dies of an uncaught exception is finished as crashed by the
``Monitor``'s exit hook; and a callback reused for another ``fit`` after an
unfinished one first finishes the old run as crashed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import keras

from producers.client import Monitor
from producers.keras_gradients import GradientCapture, check_backend
from producers.keras_graph import model_graph
from producers.keras_run import Worker, run_config, variable_name, worker_of
from producers.keras_samples import copy_inputs, monitor_sample, send_data_summary
from producers.keras_snapshots import BatchLogs, Outputs, PredictionSpec, SnapshotReport, SnapshotWorker, Tensors

logger = logging.getLogger(__name__)

DEFAULT_HISTOGRAMS_EVERY = 100
DEFAULT_PREDICTIONS_EVERY = 100


def _due(previous: int, step: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (previous, step]: one call may run several batches."""
    return step // every > previous // every


def _every(value: int | None, what: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{what} must be a positive number of batches or None, got {value!r}")
    return value


class MonitorCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Streams a Keras 3 training run to a labscreen server.

    Sends: loss and every metric in the logs, learning rate, step time and
    samples/s every ``update_every`` batches; validation metrics every epoch;
    weight histograms, norms and update ratios every ``histograms_every``
    batches (gradients too with ``gradients=True``); predictions on a fixed
    monitor sample every ``predictions_every`` batches; the model graph, run
    config and data summary at train begin; events for NaN loss and the end.

    Cost: per batch, a dict copy and a queue put. Every ``histograms_every``
    batches, a copy of each trainable variable. Every ``predictions_every``
    batches, one forward pass ``model(x, training=False)`` over the monitor
    sample on the training thread (keep it to a few hundred samples).

    When the worker thread is still busy with earlier weight, gradient or
    prediction snapshots (``keras_snapshots.MAX_PENDING_PER_KIND`` of a kind),
    the next one of that kind is skipped rather than taken, so training never
    waits and memory stays bounded. Skips are never silent: the first of each
    kind sends an event at once, the run's end event lists them all, and
    ``snapshots`` says which steps were sent and which skipped. What was sent
    is delivered like everything else the ``Monitor`` sends.

    A slow, absent or dying server never slows or stops ``fit``: the
    ``Monitor`` queues and retries in the background. Only ``on_train_end``
    waits, at most ``finish_timeout`` seconds, for delivery.

    Not thread safe: Keras calls the hooks from the training thread.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        monitor: Monitor | None = None,
        name: str | None = None,
        project: str | None = None,
        config: Mapping[str, Any] | None = None,
        run: str | None = None,
        token: str | None = None,
        update_every: int = 1,
        histograms_every: int | None = DEFAULT_HISTOGRAMS_EVERY,
        predictions: Any = None,
        predictions_every: int = DEFAULT_PREDICTIONS_EVERY,
        classes: Sequence[str] | None = None,
        from_logits: bool = False,
        task: str | None = None,
        embedding_layer: str | None = None,
        data: Any = None,
        gradients: bool = False,
        stop_on_nan: bool = False,
        all_workers: bool = False,
        batch_size: int | None = None,
        finish_timeout: float = 10.0,
    ) -> None:
        """Configure the callback; the connection opens at train begin.

        Args:
            url: Server address; exactly one of ``url`` and ``monitor``.
            monitor: A ``Monitor`` the caller owns (and finishes): the
                callback then adds no run config and does not finish the run.
            name: Run name. project: Project name. run: Run id to resume.
            config: Hyper-parameters, merged over what the callback derives.
            token: Bearer token for the server.
            update_every: Send batch scalars every this many batches.
            histograms_every: Weight (and gradient) histograms every this
                many batches, and of the final weights when training ends;
                None for none.
            predictions: Monitor sample ``(x, y)``, at most 1000 samples; for a
                model with several outputs, ``y`` goes with the first output.
            predictions_every: Predictions every this many batches, and
                when training ends.
            classes: Class names of a classifier's outputs.
            from_logits: The model outputs logits; softmax/sigmoid them.
            task: ``"classification"`` or ``"regression"``; None infers it.
            embedding_layer: Name of a layer whose output on the monitor
                sample is sent as a 2-D PCA embedding (Sequential or
                Functional models only).
            data: ``(x, y)`` to summarise at train begin; defaults to the
                monitor sample.
            gradients: Capture gradients every ``histograms_every`` steps by
                wrapping the optimizer's apply step (see
                ``producers.keras_gradients``).
            stop_on_nan: Stop training at a NaN or infinite loss.
            all_workers: Under ``tf.distribute``, log from every worker, not
                only the chief.
            batch_size: The fit batch size, for samples/s (Keras does not
                tell callbacks); also read from ``config["batch_size"]``.
            finish_timeout: Longest wait for delivery at train end.

        Raises:
            ValueError: neither or both of ``url`` and ``monitor``, a bad
                count, sample or task, ``embedding_layer`` without
                ``predictions``, or ``gradients`` without ``histograms_every``.
            GradientCaptureError: ``gradients=True`` on the JAX backend.
            TypeError: ``predictions`` or ``data`` is not a pair of arrays.
        """
        super().__init__()
        if (url is None) == (monitor is None):
            raise ValueError("pass exactly one of url='http://host:port' or monitor=Monitor(...)")
        self._url, self._monitor, self._owns = url, monitor, monitor is None
        self._name, self._project, self._run_id, self._token = name, project, run, token
        self._extra = dict(config or {})
        self._update_every = _every(update_every, "update_every") or 1
        self._histograms_every = _every(histograms_every, "histograms_every")
        self._predictions_every = _every(predictions_every, "predictions_every") or DEFAULT_PREDICTIONS_EVERY
        self._classes = list(classes) if classes else None
        self._sample = monitor_sample(predictions, classes, task) if predictions is not None else None
        self._spec = PredictionSpec(self._sample.task, tuple(classes or ()), from_logits) if self._sample else None
        if embedding_layer is not None and self._sample is None:
            raise ValueError("embedding_layer needs a monitor sample: pass predictions=(x, y) too")
        self._embedding_layer = embedding_layer
        self._data = _data_pair(data) if data is not None else None
        if gradients:
            check_backend()
            if self._histograms_every is None:
                raise ValueError("gradients=True captures every histograms_every steps; set histograms_every")
        self._gradients, self._stop_on_nan, self._all_workers = gradients, stop_on_nan, all_workers
        self._batch_size = batch_size or self._extra.get("batch_size")
        self._finish_timeout = finish_timeout
        self._worker: SnapshotWorker | None = None
        self._capture: GradientCapture | None = None
        self._probe: Any = None
        self._train_function: Any = None
        self._step = 0
        self._epoch = 0
        self._batch_start = 0.0
        self._batch_first = 0  # the first batch of the call under way: several with steps_per_execution
        self._tensors_at = self._outputs_at = -1  # the steps of the last weight and output snapshots
        self._nan_seen = False
        self._snapshots = SnapshotReport()

    @property
    def snapshots(self) -> SnapshotReport:
        """Steps of each heavy snapshot kind sent, skipped (worker behind), failed or unsent.

        Complete once the run ended (``on_train_end``); during training it is
        being filled in by the worker thread.
        """
        return self._worker.report if self._worker is not None else self._snapshots

    @property
    def run(self) -> str | None:
        """The run id once training began (or of the given monitor)."""
        return self._monitor.run if self._monitor is not None else None

    def __enter__(self) -> MonitorCallback:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and self._worker is not None:
            self._end("crashed")

    def finish(self, status: str = "finished") -> None:
        """End an unfinished run now (e.g. after catching an exception from ``fit``). Never raises."""
        if self._worker is not None:
            self._end(status)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._worker is not None:
            logger.info("labscreen: the previous fit did not end; marking run %s crashed", self.run)
            self._end("crashed")
        worker = worker_of(self.model)
        if not (worker.is_chief or self._all_workers):
            return
        self._probe = self._make_probe()
        monitor = self._open(worker)
        optimizer = getattr(self.model, "optimizer", None)
        self._step = int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer is not None else 0
        self._nan_seen = False
        self._tensors_at = self._outputs_at = -1  # a fit reusing this callback takes its own final snapshots
        self._worker = SnapshotWorker(monitor, optimizer, self._spec, bins=64)
        nodes, edges = model_graph(self.model)
        monitor.graph(nodes, edges)
        self._send_data(monitor)
        if self._gradients:
            self._capture = GradientCapture(self.model, self._histograms_every or 1)
            self._capture.install()
        self._guard_train_function()
        monitor.event(f"training started at step {self._step}")

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batch_start = time.perf_counter()
        self._batch_first = batch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._worker is None:
            return
        previous = self._step
        batches = self._batches_run(batch)
        seconds = (time.perf_counter() - self._batch_start) / batches
        self._step = step = previous + batches
        values = dict(logs or {})
        self._check_loss(values.get("loss"))
        if _due(previous, step, self._update_every):
            self._worker.put(BatchLogs(step, self._epoch, values, seconds, self._batch_size))
        if self._histograms_every and _due(previous, step, self._histograms_every):
            self._snapshot_tensors(step)
        if self._sample is not None and _due(previous, step, self._predictions_every):
            self._snapshot_outputs(step)

    def _batches_run(self, last: int) -> int:
        """Batches this call ran: one, or more with ``compile(steps_per_execution=N)``, from their indices.

        An epoch's last call may run fewer than its indices say (six
        batches in calls of four), so the indices stop at the epoch's
        length when Keras knows it. The optimizer's count is not used: a
        LossScaleOptimizer does not count the updates it skips.
        """
        steps = (self.params or {}).get("steps")
        if isinstance(steps, int) and steps > 0:
            last = min(last, steps - 1)
        return max(1, last - self._batch_first + 1)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._monitor is None or self._worker is None:
            return
        validation = {k: v for k, v in (logs or {}).items() if k.startswith("val_") and isinstance(v, (int, float))}
        if validation:
            self._monitor.log(validation, step=self._step)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._worker is None:
            return
        step = self._step  # the last batch's state, unless it was taken already (a short fit gets one)
        if step > 0 and self._histograms_every and self._tensors_at != step:
            self._snapshot_tensors(step)
        if step > 0 and self._sample is not None and self._outputs_at != step:
            self._snapshot_outputs(step)
        self._end("finished")

    def _open(self, worker: Worker) -> Monitor:
        if self._monitor is not None and not (self._owns and self._monitor.finished):
            return self._monitor
        params = dict(self.params or {})
        extra = dict(self._extra)
        if self._batch_size:
            extra.setdefault("batch_size", self._batch_size)
        config = run_config(self.model, params, worker, extra)
        self._monitor = Monitor(
            self._url, self._run_id, self._name, self._project, config, self._token,
            framework=f"keras {keras.__version__}", rank=worker.rank, world_size=worker.world_size,
        )  # fmt: skip
        return self._monitor

    def _send_data(self, monitor: Monitor) -> None:
        data = self._data or ((self._sample.x, self._sample.y) if self._sample else None)
        if data is None:
            return
        task = self._sample.task if self._sample else ("classification" if self._classes else "regression")
        name = "train" if self._data else "monitor sample"  # not named train when it is the predictions sample
        try:
            send_data_summary(monitor, data[0], data[1], task, self._classes, name=name)
        except (TypeError, ValueError) as exc:
            logger.warning("labscreen: data summary not sent: %s", exc)

    def _make_probe(self) -> Any:
        """A model returning (outputs, embedding layer output), or None without an embedding layer.

        Raises:
            ValueError: the layer does not exist, or the model has no static
                graph (subclassed) to take a layer's output from.
        """
        if self._embedding_layer is None:
            return None
        layer = self.model.get_layer(self._embedding_layer)
        try:
            inputs = self.model.inputs
            return keras.Model(inputs[0] if len(inputs) == 1 else inputs, [self.model.outputs[0], layer.output])
        except (AttributeError, ValueError) as exc:
            raise ValueError(
                f"embedding_layer={self._embedding_layer!r} needs a Sequential or Functional model with known "
                f"inputs; {type(self.model).__name__} has no static graph ({exc})"
            ) from exc

    def _guard_train_function(self) -> None:
        """Wrap ``model.train_function`` so an exception inside a train step finishes the run as crashed."""
        original = self.model.train_function
        if original is None:
            return
        self._train_function = original

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            except KeyboardInterrupt:
                self._end("finished", "interrupted")
                raise
            except BaseException:
                self._end("crashed")
                raise

        self.model.train_function = guarded

    def _check_loss(self, loss: Any) -> None:
        if not isinstance(loss, (int, float)) or math.isfinite(loss):
            return
        if not self._nan_seen and self._monitor is not None:
            self._nan_seen = True
            stopping = " - stopping training" if self._stop_on_nan else ""
            self._monitor.event(f"loss is {loss} at step {self._step}{stopping}", level="error", step=self._step)
        if self._stop_on_nan:
            self.model.stop_training = True

    def _snapshot_tensors(self, step: int) -> None:
        assert self._worker is not None
        self._tensors_at = step
        self._offer("weights", step, self._take_weights)
        capture = self._capture
        if capture is not None:
            self._offer("gradients", step, lambda s: Tensors("gradients", s, capture.names, capture.read()))

    def _take_weights(self, step: int) -> Tensors:
        variables = self.model.trainable_variables
        values = [keras.ops.convert_to_numpy(v) for v in variables]
        return Tensors("weights", step, [variable_name(self.model, v) for v in variables], values)

    def _snapshot_outputs(self, step: int) -> None:
        self._outputs_at = step
        self._offer("predictions", step, self._take_outputs)

    def _offer(self, kind: str, step: int, take: Callable[[int], Tensors | Outputs]) -> None:
        """Hand a heavy snapshot to the worker, or skip it (and say so once per kind) if it is behind."""
        assert self._worker is not None
        if self._worker.offer(kind, step, lambda: take(step)) or self._monitor is None:
            return
        if len(self._worker.report.skipped[kind]) == 1:
            self._monitor.event(
                f"labscreen skipped the {kind} snapshot at step {step}: its worker thread was still busy with "
                "earlier ones (training is never made to wait); further skips are listed when training ends",
                level="warning",
            )

    def _take_outputs(self, step: int) -> Outputs:
        assert self._sample is not None
        model = self._probe or self.model
        result = model(self._sample.x, training=False)
        outputs, activations = (result[0], result[1]) if self._probe is not None else (result, None)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        elif isinstance(outputs, dict):
            outputs = next(iter(outputs.values()))
        return Outputs(
            step, self._sample.y, keras.ops.convert_to_numpy(outputs),
            None if activations is None else keras.ops.convert_to_numpy(activations),
        )  # fmt: skip

    def _end(self, status: str, how: str | None = None) -> None:
        """Restore what was wrapped, drain the worker, finish (or mark) the run. Never raises."""
        worker, self._worker = self._worker, None
        if self._train_function is not None:
            self.model.train_function, self._train_function = self._train_function, None
        if self._capture is not None:
            self._capture.remove()
            self._capture = None
        if worker is not None:
            self._snapshots = worker.close(self._finish_timeout)
        monitor = self._monitor
        if monitor is None or monitor.finished:
            return
        try:
            if worker is not None:
                _report_losses(monitor, self._snapshots)
            level = "info" if status == "finished" else "error"
            monitor.event(f"training {how or status} at step {self._step}", level=level)
            if self._owns:
                monitor.finish(status, timeout=self._finish_timeout)
        except (TypeError, ValueError):
            logger.debug("labscreen: finishing the run failed", exc_info=True)


def _report_losses(monitor: Monitor, report: SnapshotReport) -> None:
    """One event per outcome (skipped, failed, unsent) that kept snapshots from the ``Monitor``, with their steps."""
    reasons = {
        "skipped": "skipped because the worker thread was behind",
        "failed": "failed (see the training process's log)",
        "unsent": "not sent: the worker had not finished when the run ended",
    }
    for outcome, reason in reasons.items():
        if report.count(outcome):
            monitor.event(f"labscreen snapshots {reason}: {report.describe(outcome)}", level="warning")


def _data_pair(data: Any) -> tuple[Any, Any]:
    if not isinstance(data, (tuple, list)) or len(data) not in (1, 2):
        raise TypeError(f"data must be (x, y) or (x,), got {type(data).__name__}")
    x = copy_inputs(data[0], "data x")
    y = copy_inputs(data[1], "data y") if len(data) == 2 and data[1] is not None else None
    if y is not None and not hasattr(y, "shape"):
        raise TypeError("data y must be one array of targets")
    return x, y
