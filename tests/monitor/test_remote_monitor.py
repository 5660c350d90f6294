"""Keras's own RemoteMonitor callback publishes to labscreen unchanged (real TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.serving import ServerThread

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("send_as_json", [False, True])
def test_remote_monitor_epoch_logs_become_scalars(tmp_path: Path, send_as_json: bool) -> None:
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int64")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with ServerThread(tmp_path / "rm.sqlite") as server:
        remote = keras.callbacks.RemoteMonitor(
            root=server.url, path="/publish/epoch/end/?run=keras-rm", send_as_json=send_as_json
        )
        history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0, callbacks=[remote])
        store = server.running.store
        assert store.flush(10)
        names = store.scalar_names("keras-rm")
        assert {"epoch/loss", "epoch/accuracy", "epoch/val_loss", "epoch/val_accuracy"} <= set(names)
        loss = store.scalars("keras-rm", "epoch/loss")
        np.testing.assert_array_equal(loss.steps, [0, 1])
        np.testing.assert_allclose(loss.values, history.history["loss"], rtol=1e-6)
