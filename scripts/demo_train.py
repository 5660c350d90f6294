"""Train a real model on scikit-learn's bundled digits and stream it to labscreen.

No download: ``sklearn.datasets.load_digits`` ships 1,797 8x8 images. The
demo trains a small CNN for many short epochs so that the dashboard shows a
learning curve, moving weight histograms, a sharpening confusion matrix and
moving class-probability bars; it runs for ``--minutes`` or until Ctrl-C.
``--runs 2`` trains two configurations side by side, one process each.

    .venv/bin/python scripts/demo_train.py http://127.0.0.1:5006 --runs 2
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS: list[dict[str, Any]] = [
    {"name": "digits-cnn-adam", "optimizer": "adam", "learning_rate": 1e-3, "filters": 16, "dropout": 0.2},
    {"name": "digits-cnn-sgd", "optimizer": "sgd", "learning_rate": 2e-2, "filters": 8, "dropout": 0.0},
]


def build(config: dict[str, Any]) -> Any:
    import keras

    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(config["filters"], 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Conv2D(config["filters"] * 2, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dropout(config["dropout"], name="dropout"),
        keras.layers.Dense(32, activation="relu", name="embedding"),
        keras.layers.Dense(10, activation="softmax", name="classes"),
    ], name=config["name"].replace("-", "_"))  # fmt: skip
    optimizer = keras.optimizers.get(
        {"class_name": config["optimizer"], "config": {"learning_rate": config["learning_rate"]}}
    )
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(url: str, config: dict[str, Any], minutes: float, seed: int) -> None:
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from producers.keras import MonitorCallback

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_val, y_train, y_val = train_test_split(x, digits.target, test_size=0.25, random_state=seed)
    keras.utils.set_random_seed(seed)
    model = build(config)
    deadline = time.monotonic() + minutes * 60
    stopper = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", time.monotonic() > deadline)
    )
    # Training runs until --minutes are up, not for a planned number of epochs: no total, so no ETA.
    callback = MonitorCallback(
        url, name=config["name"], project="labscreen-demo", config={**config, "batch_size": 32, "epochs": None},
        histograms_every=20, predictions=(x_val[:300], y_val[:300]), predictions_every=20,
        classes=[str(d) for d in range(10)], embedding_layer="embedding", gradients=True,
        data=(x_train, y_train), batch_size=32,
    )  # fmt: skip
    with callback:
        try:
            model.fit(x_train, y_train, batch_size=32, epochs=100_000, validation_data=(x_val, y_val),
                      verbose=0, callbacks=[callback, stopper])  # fmt: skip
        except KeyboardInterrupt:
            callback.finish("finished")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train on scikit-learn's digits and stream to a labscreen server.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:5006", help="labscreen server address")
    parser.add_argument("--runs", type=int, choices=(1, 2), default=1, help="configurations trained side by side")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.runs == 1:
        train(args.url, CONFIGS[0], args.minutes, seed=0)
        return 0
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=train, args=(args.url, config, args.minutes, i), name=config["name"])
        for i, config in enumerate(CONFIGS)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        for worker in workers:
            worker.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
