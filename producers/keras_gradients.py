"""Gradient capture for ``fit``: a wrapper around the optimizer's ``apply`` step.

Keras 3 ``fit`` computes gradients inside its compiled train step and hands
them to ``optimizer.apply`` (via ``apply_gradients``). ``GradientCapture``
shadows that method on the optimizer instance with a wrapper that, every
``every``-th update (decided in the graph with ``keras.ops.cond``, so the
other steps pay one integer comparison), copies each gradient into a
non-trainable shadow variable. The callback reads those variables on the
training thread after that step, while they are stable, and hands the copies
to its worker for norms and histograms.

The wrapper is seen by the train step when it is traced, so ``install``
rebuilds the model's train function; ``remove`` restores the optimizer and
rebuilds it again so later ``fit`` calls trace without the capture.

Unsupported, and refused with ``GradientCaptureError``: the JAX backend (its
train step is stateless and cannot assign variables), and models trained
under a non-default ``tf.distribute`` strategy (per-replica gradients have no
single value to copy).
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

from producers.keras_run import variable_name

logger = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]


class GradientCaptureError(ValueError):
    """``gradients=True`` cannot work for this backend, model or optimizer; the message says why."""


def check_backend() -> None:
    """Refuse backends whose train step cannot assign variables.

    Raises:
        GradientCaptureError: the Keras backend is JAX.
    """
    if keras.backend.backend() == "jax":
        raise GradientCaptureError(
            "gradients=True needs the TensorFlow or PyTorch backend: JAX trains with a stateless "
            "optimizer step that cannot copy gradients out. Use gradients=False, or KERAS_BACKEND=tensorflow."
        )


class GradientCapture:
    """Copies the gradients of every ``every``-th update into readable variables.

    Not thread safe: ``install``, ``read`` and ``remove`` belong to the
    training thread (the callback's hooks).
    """

    def __init__(self, model: Any, every: int) -> None:
        """Prepare a capture for ``model``'s optimizer.

        Raises:
            GradientCaptureError: the model has no optimizer, or trains
                under a distribution strategy.
        """
        check_backend()
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise GradientCaptureError("gradients=True needs a compiled model; call model.compile() first")
        strategy = type(getattr(model, "distribute_strategy", None)).__name__
        if strategy not in ("NoneType", "_DefaultDistributionStrategy"):
            raise GradientCaptureError(
                f"gradients=True is not supported under {strategy}: per-replica gradients have no single "
                "value to capture. Use gradients=False for distributed training."
            )
        self._model = model
        self._optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        self._every = every
        self._variables = list(model.trainable_variables)
        self.names = [variable_name(model, v) for v in self._variables]
        self._slots = [
            keras.Variable(np.zeros(v.shape, dtype="float32"), trainable=False, name=f"labscreen_grad_{i}")
            for i, v in enumerate(self._variables)
        ]
        self._original: Any = None

    def install(self) -> None:
        """Shadow the optimizer's ``apply`` and rebuild the train function."""
        if self._original is not None:
            return
        self._original = self._optimizer.apply
        original, capture = self._original, self._capture

        def apply(grads: Any, trainable_variables: Any = None) -> Any:
            capture(list(grads), trainable_variables)
            return original(grads, trainable_variables)

        self._optimizer.apply = apply
        self._model.make_train_function(force=True)

    def remove(self) -> None:
        """Restore the optimizer's own ``apply`` and rebuild the train function. Never raises."""
        if self._original is None:
            return
        try:
            del self._optimizer.apply
            self._model.make_train_function(force=True)
        except (AttributeError, TypeError) as exc:
            logger.debug("could not restore the optimizer's apply (%s)", exc)
        self._original = None

    def read(self) -> list[Array]:
        """Copies of the last captured gradients, in ``names`` order."""
        return [keras.ops.convert_to_numpy(slot) for slot in self._slots]

    def _capture(self, grads: list[Any], variables: Any) -> None:
        """Assign gradients to the slots on due steps; runs while the train step is traced."""
        if variables is not None:
            by_id = {id(v): g for v, g in zip(variables, grads, strict=False)}
            grads = [by_id.get(id(v)) for v in self._variables]
        pairs = [(slot, g) for slot, g in zip(self._slots, grads, strict=True) if g is not None]
        due = keras.ops.equal(keras.ops.mod(self._optimizer.iterations + 1, self._every), 0)

        def copy() -> Any:
            for slot, grad in pairs:
                slot.assign(keras.ops.cast(keras.ops.convert_to_tensor(grad), slot.dtype))
            return keras.ops.zeros(())

        keras.ops.cond(due, copy, lambda: keras.ops.zeros(()))
