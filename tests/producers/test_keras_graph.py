"""Model-graph extraction, run config and learning-rate resolution, without a server."""

from __future__ import annotations

import json
import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from producers.keras_graph import model_graph
from producers.keras_run import learning_rates, run_config, worker_of

pytestmark = pytest.mark.tf


def names_and_edges(model: Any) -> tuple[set[str], set[tuple[str, str]]]:
    nodes, edges = model_graph(model)
    return {n["name"] for n in nodes}, set(edges)


def test_functional_with_shared_layer_nested_model_and_two_outputs() -> None:
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    shared = keras.layers.Dense(4, name="shared")
    inner = keras.Sequential([keras.layers.Dense(6, name="s1"), keras.layers.Dense(7, name="s2")], name="sub")
    merged = keras.layers.Concatenate(name="cat")([shared(a), shared(keras.layers.Dense(4, name="lift")(b))])
    body = inner(merged)
    model = keras.Model([a, b], [keras.layers.Dense(2, name="o1")(body), keras.layers.Dense(1, name="o2")(body)])
    names, edges = names_and_edges(model)
    assert names == {"a", "b", "shared", "lift", "cat", "sub/s1", "sub/s2", "o1", "o2"}
    assert edges == {
        ("a", "shared"), ("b", "lift"), ("lift", "shared"), ("shared", "cat"),
        ("cat", "sub/s1"), ("sub/s1", "sub/s2"), ("sub/s2", "o1"), ("sub/s2", "o2"),
    }  # fmt: skip
    nodes = {n["name"]: n for n in model_graph(model)[0]}
    assert nodes["sub/s1"] == {
        "name": "sub/s1",
        "type": "Dense",
        "output_shape": "(None, 6)",
        "params": 54,
        "trainable": 54,
    }


def test_sequential_is_a_chain_with_frozen_counts() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d1"), keras.layers.Dense(1, name="d2")])
    model.get_layer("d1").trainable = False
    nodes, edges = model_graph(model)
    assert [(n["name"], n["params"], n["trainable"]) for n in nodes] == [("d1", 8, 0), ("d2", 3, 3)]
    assert edges == [("d1", "d2")]


def test_subclassed_model_is_its_layer_list() -> None:
    class Two(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = keras.layers.Dense(3, name="first"), keras.layers.Dense(2, name="second")

        def call(self, x: Any) -> Any:
            return self.second(self.first(x))

    model = Two()
    model(np.zeros((1, 4), "float32"))
    assert names_and_edges(model) == ({"first", "second"}, set())


def test_run_config_is_json_and_user_config_wins() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)), "mse")
    config = run_config(model, {"epochs": 3, "steps": 7}, worker_of(model), {"epochs": 4, "note": np.float32(1.5)})
    json.dumps(config, allow_nan=False)
    assert config["epochs"] == 4 and config["steps_per_epoch"] == 7 and config["note"] == 1.5
    assert config["params_total"] == 8 and (config["rank"], config["world_size"]) == (0, 1)
    assert config["optimizer"]["learning_rate"]["class_name"] == "ExponentialDecay"


def test_learning_rates_resolve_schedules_per_step() -> None:
    decay = keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5))
    np.testing.assert_allclose(learning_rates(decay, [1, 11, 21]), [0.1, 0.05, 0.025], rtol=1e-6)
    warmup = keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 100, warmup_target=0.2, warmup_steps=10))
    np.testing.assert_allclose(learning_rates(warmup, [1, 6, 11]), [0.1, 0.15, 0.2], rtol=1e-6)
    np.testing.assert_allclose(learning_rates(keras.optimizers.SGD(0.01), [1, 2]), [0.01, 0.01], rtol=1e-6)
