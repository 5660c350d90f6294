"""What a Keras training run is: its config, its worker's place, its learning rate.

Pure functions over a model and the ``params`` Keras gives callbacks, used
once at train begin (config, worker) or off the training thread (learning
rate). Nothing here sends anything.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from monitor.wire.limits import MAX_JSON_DEPTH

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Worker:
    """This process's place in a distributed run: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    strategy: str = ""
    replicas: int = 1

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


def worker_of(model: Any) -> Worker:
    """Find this worker's rank and the world size from the model's ``tf.distribute`` strategy.

    Multi-worker strategies carry a cluster resolver: the chief (or, without
    a chief, worker 0) is rank 0, workers follow. Anything else, including
    other backends, is rank 0 of 1. Never raises.
    """
    strategy = getattr(model, "distribute_strategy", None)
    name = type(strategy).__name__ if strategy is not None else ""
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    resolver = getattr(strategy, "cluster_resolver", None)
    try:
        spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    except (AttributeError, ValueError, RuntimeError) as exc:
        logger.debug("cluster resolver gave no cluster spec (%s); assuming a single worker", exc)
        spec = {}
    chiefs, workers = len(spec.get("chief", [])), len(spec.get("worker", []))
    if chiefs + workers == 0:
        return Worker(strategy="" if name == "_DefaultDistributionStrategy" else name, replicas=replicas)
    task_type, task_id = getattr(resolver, "task_type", None), int(getattr(resolver, "task_id", 0) or 0)
    rank = 0 if task_type == "chief" else chiefs + task_id if task_type == "worker" else chiefs + workers
    return Worker(rank=rank, world_size=max(chiefs + workers, rank + 1), strategy=name, replicas=replicas)


def run_config(model: Any, params: dict[str, Any], worker: Worker, extra: dict[str, Any]) -> dict[str, Any]:
    """The run's config: fit parameters, optimizer, parameter counts, worker, then ``extra``.

    ``extra`` (the user's ``config=``) wins over anything derived. The result
    is JSON-safe and no deeper than the wire's ``MAX_JSON_DEPTH``.
    """
    trainable = sum(_size(v) for v in model.trainable_weights)
    config: dict[str, Any] = {
        "model": model.name,
        "model_class": type(model).__name__,
        "epochs": params.get("epochs"),
        "steps_per_epoch": params.get("steps"),
        "params_total": sum(_size(v) for v in model.weights),
        "params_trainable": trainable,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "rank": worker.rank,
        "world_size": worker.world_size,
    }
    if worker.strategy:
        config.update(distribute_strategy=worker.strategy, replicas=worker.replicas)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        config["optimizer"] = {"class": type(optimizer).__name__, **_optimizer_config(optimizer)}
    config.update(extra)
    result: dict[str, Any] = json_safe(config, MAX_JSON_DEPTH - 1)
    return result


def _optimizer_config(optimizer: Any) -> dict[str, Any]:
    try:
        config: dict[str, Any] = optimizer.get_config()
    except (NotImplementedError, TypeError, ValueError) as exc:
        logger.debug("optimizer %s has no usable get_config (%s)", type(optimizer).__name__, exc)
        return {}
    return config


def _size(variable: Any) -> int:
    return int(np.prod([int(d) for d in variable.shape], dtype=np.int64))


def json_safe(value: Any, depth: int) -> Any:
    """Turn ``value`` into JSON-safe data: numpy scalars to Python, unknowns to ``repr``.

    Containers deeper than ``depth`` become their ``repr`` (cut to 200
    characters); non-finite floats become ``None``. Never raises.
    """
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict) and depth > 0:
        return {str(k): json_safe(v, depth - 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and depth > 0:
        return [json_safe(v, depth - 1) for v in value]
    return repr(value)[:200]


def learning_rates(optimizer: Any, steps: list[int]) -> list[float | None]:
    """The learning rate the optimizer used for each update number in ``steps`` (1-based).

    ``LearningRateSchedule``s are evaluated at ``step - 1`` (the iteration
    count the optimizer saw), all steps in one vectorised call when the
    schedule accepts an array, else one call per step. A plain rate variable
    (or a zero-argument callable) is read once for the whole list: rate changes (``ReduceLROnPlateau``)
    happen between epochs, so a group of recent steps shares one value.
    Meant for the worker thread: each read runs eager ops. Unreadable rates
    are None; never raises.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    rate = getattr(inner, "_learning_rate", None)
    try:
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            return _scheduled(rate, steps)
        value = float(keras.ops.convert_to_numpy(inner.learning_rate))
        return [value] * len(steps)
    except (AttributeError, TypeError, ValueError) as exc:
        logger.debug("cannot read the learning rate of %s (%s)", type(inner).__name__, exc)
        return [None] * len(steps)


def _scheduled(schedule: Any, steps: list[int]) -> list[float | None]:
    iterations = np.asarray(steps, dtype=np.int64) - 1
    try:
        values = np.asarray(keras.ops.convert_to_numpy(schedule(iterations)), dtype=np.float64)
        if values.shape == iterations.shape:
            return [float(v) for v in values]
    except (TypeError, ValueError):
        pass  # Schedules with Python control flow (ops.cond) need one step at a time.
    return [float(keras.ops.convert_to_numpy(schedule(int(i)))) for i in iterations]


def variable_name(model: Any, variable: Any) -> str:
    """A variable's path without the model's name in front: ``"dense/kernel"``, not ``"sequential_3/dense/kernel"``."""
    path = str(variable.path)
    prefix = f"{model.name}/"
    return path[len(prefix) :] if path.startswith(prefix) else path
