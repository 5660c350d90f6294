"""Cost of monitoring to Keras ``fit``: median wall time under each callback, as a ratio.

Trains an MLP 784-256-256-10 (batch 64, 12,000 synthetic samples, 2 epochs)
under: no callback; TensorBoard(update_freq="batch"); the same with
histogram_freq=1; MonitorCallback with scalars every batch; MonitorCallback
with scalars, histograms every 50 batches and predictions on 256 samples
every 100 batches. Repetitions are interleaved (one of each per round) so
drift in machine load hits every variant alike. A labscreen server runs
in-process on port 0. Prints a markdown table.

    .venv/bin/python scripts/bench_overhead.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

from producers.keras import MonitorCallback
from tests.serving import ServerThread

Factory = Callable[[], list[Any]]


def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    net.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return net


def variants(url: str, logdir: Path, x: Any, y: Any) -> dict[str, Factory]:
    def tensorboard(hist: int) -> Factory:
        return lambda: [
            keras.callbacks.TensorBoard(
                str(logdir / f"tb{hist}-{time.time_ns()}"), update_freq="batch", histogram_freq=hist
            )
        ]

    return {
        "no callback": lambda: [],
        'TensorBoard(update_freq="batch")': tensorboard(0),
        'TensorBoard(update_freq="batch", histogram_freq=1)': tensorboard(1),
        "MonitorCallback, scalars every batch": lambda: [MonitorCallback(url, name="scalars", histograms_every=None)],
        "MonitorCallback, scalars + histograms/50 + predictions(256)/100": lambda: [
            MonitorCallback(url, name="all", histograms_every=50, predictions=(x[:256], y[:256]), predictions_every=100)
        ],
    }  # fmt: skip


def timed_fit(x: Any, y: Any, callbacks: list[Any]) -> float:
    net = model()
    net.fit(x[:640], y[:640], batch_size=64, epochs=1, verbose=0)  # trace outside the timing
    start = time.perf_counter()
    net.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions of every variant")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12_000, 784)).astype("float32")
    y = rng.integers(0, 10, size=12_000)
    with tempfile.TemporaryDirectory() as tmp, ServerThread(Path(tmp) / "bench.sqlite") as server:
        cases = variants(server.url, Path(tmp), x, y)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(args.rounds):
            for name, factory in cases.items():
                times[name].append(timed_fit(x, y, factory()))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    base = statistics.median(times["no callback"])
    print("| variant | median fit time (s) | ratio to no callback |")
    print("|---|---:|---:|")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"| {name} | {median:.2f} | {median / base:.3f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
