"""Integration tests of /ws/ingest against a real server on port 0 with real websocket clients."""

from __future__ import annotations

import asyncio
import json
import struct

import numpy as np
import pytest
from tornado.httpclient import HTTPClientError

from monitor.ingest import CLOSE_TOO_LARGE
from monitor.wire import (
    MAX_MESSAGE_BYTES,
    DataSummary,
    Error,
    Event,
    Finish,
    Graph,
    GraphNode,
    Hello,
    Histogram,
    Predictions,
    Scalars,
    encode,
)
from tests.monitor.harness import Harness, WireClient


def points(run: str, seq: int, start: int, n: int, names: tuple[str, ...] = ("loss",)) -> Scalars:
    steps = np.repeat(np.arange(start, start + n, dtype=np.int64), len(names))
    index = np.tile(np.arange(len(names), dtype=np.int32), n)
    values = np.sin(steps.astype(np.float64)) + index
    return Scalars(run, seq, names, steps, np.full(len(steps), 1.7e9), index, values)


async def test_hello_frames_acks_and_rest_values_are_identical(harness: Harness) -> None:
    client = await harness.connect()
    assert await client.hello("run-a", name="first", project="proj", config={"lr": 0.01}) == 0
    frame = points("run-a", 1, 0, 100, ("loss", "acc"))
    await client.send(frame)
    await client.until_ack("run-a", 1)
    body = json.loads((await harness.fetch("/api/runs/run-a/scalars/loss")).body)
    sent = frame.values[frame.index == 0]
    assert body["steps"] == list(range(100))
    assert body["values"] == sent.tolist()
    run = json.loads((await harness.fetch("/api/runs/run-a")).body)
    assert run["name"] == "first" and run["project"] == "proj" and run["config"] == {"lr": 0.01}
    assert run["status"] == "running" and run["last_step"] == 99


async def test_every_kind_lands_in_the_store_and_rest(harness: Harness) -> None:
    client = await harness.connect()
    await client.hello("run-k")
    edges, counts = np.linspace(-1, 1, 9), np.arange(8, dtype=np.float64)
    frames = [
        Histogram("run-k", 1, "dense/kernel", 5, 1.0, edges, counts, -1.0, 1.0, 0.1, 0.4, 28, 0),
        Predictions(
            "run-k",
            2,
            "val",
            5,
            1.0,
            "classification",
            np.array([0, 1]),
            np.array([[0.9, 0.1], [0.3, 0.7]]),
            ("cat", "dog"),
            np.array([[0.0, 1.0], [1.0, 0.0]]),
        ),
        Graph(
            "run-k",
            3,
            (GraphNode("in", "InputLayer", "(None, 2)"), GraphNode("out", "Dense", "(None, 2)", 6, 6)),
            (("in", "out"),),
        ),
        DataSummary(
            "run-k",
            4,
            "train",
            0,
            1.0,
            ("x",),
            np.array([[0.0, 0.5, 1.0]]),
            np.array([[3.0, 4.0]]),
            ("cat", "dog"),
            np.array([5, 2]),
        ),
        Event("run-k", 5, 5, 1.0, "warning", "checkpoint saved"),
        Finish("run-k", 6, 2.0, "finished"),
    ]
    for frame in frames:
        await client.send(frame)
    await client.until_ack("run-k", 6)
    hist = json.loads((await harness.fetch("/api/runs/run-k/histograms/dense/kernel")).body)["histograms"][0]
    assert hist["edges"] == edges.tolist() and hist["counts"] == counts.tolist() and hist["std"] == 0.4
    pred = json.loads((await harness.fetch("/api/runs/run-k/predictions")).body)["predictions"][0]
    assert pred["outputs"] == [[0.9, 0.1], [0.3, 0.7]] and pred["classes"] == ["cat", "dog"]
    assert pred["embedding"] == [[0.0, 1.0], [1.0, 0.0]]
    graph = json.loads((await harness.fetch("/api/runs/run-k/graph")).body)
    assert [n["name"] for n in graph["nodes"]] == ["in", "out"] and graph["edges"] == [["in", "out"]]
    data = json.loads((await harness.fetch("/api/runs/run-k/data")).body)["data"][0]
    assert data["label_counts"] == [5, 2] and data["counts"] == [[3.0, 4.0]]
    events = json.loads((await harness.fetch("/api/runs/run-k/events")).body)["events"]
    assert events[0]["text"] == "checkpoint saved"
    assert json.loads((await harness.fetch("/api/runs/run-k")).body)["status"] == "finished"


async def test_resent_frames_are_stored_once(harness: Harness) -> None:
    client = await harness.connect()
    await client.hello("run-d")
    for seq in (1, 2):
        await client.send(points("run-d", seq, (seq - 1) * 10, 10))
    await client.until_ack("run-d", 2)
    await client.close()
    again = await harness.connect()
    assert await again.hello("run-d") == 2
    await again.send(points("run-d", 3, 20, 10))
    await again.until_ack("run-d", 3)
    body = json.loads((await harness.fetch("/api/runs/run-d/scalars/loss")).body)
    assert body["steps"] == list(range(30))


async def bad_then_good(harness: Harness, bad: bytes) -> Error:
    """Send a bad frame from one producer while another keeps working; return the error."""
    other = await harness.connect()
    await other.hello("bystander", stream="b")
    await other.send(points("bystander", 1, 0, 5))
    client = await harness.connect()
    await client.hello("victim")
    await client.send(bad)
    error = await client.receive()
    assert isinstance(error, Error), error
    await client.send(points("victim", 50, 0, 3))
    await client.until_ack("victim", 50)
    await other.send(points("bystander", 2, 5, 5))
    await other.until_ack("bystander", 2)
    await harness.flush()
    body = json.loads((await harness.fetch("/api/runs/bystander/scalars/loss")).body)
    assert body["steps"] == list(range(10))
    return error


def raw(header: object, body: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + body


async def test_truncated_frame(harness: Harness) -> None:
    error = await bad_then_good(harness, encode(points("victim", 1, 0, 10))[:-8])
    assert error.code == "bad_frame" and "'values'" in error.message and error.seq == 1


async def test_header_not_json(harness: Harness) -> None:
    error = await bad_then_good(harness, struct.pack("<I", 4) + b"{{{{")
    assert error.code == "bad_header" and "not JSON" in error.message


async def test_header_not_an_object(harness: Harness) -> None:
    error = await bad_then_good(harness, raw("scalars"))
    assert error.code == "bad_header" and "JSON object" in error.message


async def test_unknown_kind(harness: Harness) -> None:
    error = await bad_then_good(harness, raw({"kind": "gossip", "run": "victim", "seq": 1}))
    assert error.code == "unknown_kind" and "'gossip'" in error.message


async def test_missing_field(harness: Harness) -> None:
    error = await bad_then_good(harness, raw({"kind": "finish", "run": "victim", "seq": 1, "fields": {"wall": 1}}))
    assert error.code == "missing_field" and "'status'" in error.message


async def test_disallowed_dtype(harness: Harness) -> None:
    header = {
        "kind": "scalars",
        "run": "victim",
        "seq": 1,
        "fields": {"names": ["a"]},
        "arrays": [{"name": "values", "dtype": "<c16", "shape": [1], "offset": 0, "nbytes": 16}],
    }
    error = await bad_then_good(harness, raw(header, bytes(16)))
    assert error.code == "bad_dtype" and "<c16" in error.message


async def test_shape_not_matching_bytes(harness: Harness) -> None:
    header = {
        "kind": "scalars",
        "run": "victim",
        "seq": 1,
        "fields": {"names": ["a"]},
        "arrays": [{"name": "steps", "dtype": "<i8", "shape": [4], "offset": 0, "nbytes": 8}],
    }
    error = await bad_then_good(harness, raw(header, bytes(8)))
    assert error.code == "bad_shape" and "'steps'" in error.message


async def test_array_over_element_limit(harness: Harness) -> None:
    header = {
        "kind": "scalars",
        "run": "victim",
        "seq": 1,
        "fields": {"names": ["a"]},
        "arrays": [{"name": "values", "dtype": "u1", "shape": [3_000_000], "offset": 0, "nbytes": 3_000_000}],
    }
    error = await bad_then_good(harness, raw(header, bytes(3_000_000)))
    assert error.code == "too_many_elements"


@pytest.mark.parametrize(
    ("edges", "counts", "says"),
    [
        ([0.0, np.nan, 2.0], [1.0, 1.0], "'edges' must be finite and ascending"),
        ([0.0, 2.0, 1.0], [1.0, 1.0], "'edges' must be finite and ascending"),
        ([0.0, 1.0, 2.0], [1.0, -3.0], "'counts' must be finite and not negative"),
        ([0.0, 1.0, 2.0], [np.inf, 1.0], "'counts' must be finite and not negative"),
    ],
)
async def test_a_histogram_with_impossible_bins_is_refused(
    harness: Harness, edges: list[float], counts: list[float], says: str
) -> None:
    bad = Histogram("victim", 1, "w", 0, 0.0, np.array(edges), np.array(counts), 0.0, 2.0, 1.0, 0.5, 2, 0)
    error = await bad_then_good(harness, encode(bad))
    assert error.code == "bad_field" and says in error.message and error.seq == 1


async def test_a_histogram_over_a_range_a_few_ulps_wide_is_accepted(harness: Harness) -> None:
    """Equal-width bins over a tiny range have equal edges: a real histogram (nearly constant weights)."""
    edges = np.linspace(1.0, np.nextafter(1.0, 2.0), 65)
    assert (np.diff(edges) == 0).any()
    client = await harness.connect()
    await client.hello("tiny")
    await client.send(Histogram("tiny", 1, "w", 0, 0.0, edges, np.ones(64), 1.0, 1.0, 1.0, 0.0, 64, 0))
    await client.until_ack("tiny", 1)


async def test_nan_and_inf_are_stored_and_flagged(harness: Harness) -> None:
    client = await harness.connect()
    await client.hello("run-nan")
    values = np.array([1.0, np.nan, np.inf, -np.inf])
    await client.send(Scalars("run-nan", 1, ("loss",), np.arange(4), np.zeros(4), np.zeros(4, np.int32), values))
    await client.until_ack("run-nan", 1)
    body = json.loads((await harness.fetch("/api/runs/run-nan/scalars/loss")).body)
    assert body["values"] == [1.0, "NaN", "Infinity", "-Infinity"]
    series = harness.server.store.scalars("run-nan", "loss")
    np.testing.assert_array_equal(series.values, values)
    metrics = (await harness.fetch("/metrics")).body.decode()
    assert "labscreen_nonfinite_values_total 3" in metrics


async def test_wrong_protocol_version(harness: Harness) -> None:
    client = await harness.connect()
    await client.send(raw({"kind": "hello", "run": "r", "seq": 0, "fields": {"stream": "s", "protocol": 7}}))
    error = await client.receive()
    assert isinstance(error, Error) and error.code == "bad_version" and "protocol 7" in error.message


async def test_data_before_hello_is_unknown_run(harness: Harness) -> None:
    error = await bad_then_good(harness, encode(points("stranger", 1, 0, 3)))
    assert error.code == "unknown_run" and "send hello first" in error.message


async def test_seq_going_backwards(harness: Harness) -> None:
    client = await harness.connect()
    await client.hello("run-b")
    await client.send(points("run-b", 5, 0, 3))
    await client.until_ack("run-b", 5)
    await client.send(points("run-b", 4, 3, 3))
    error = await client.receive()
    assert isinstance(error, Error) and error.code == "seq_backwards" and "seq 4 after 5" in error.message
    await client.send(points("run-b", 6, 3, 3))
    await client.until_ack("run-b", 6)


async def test_text_frames_are_refused(harness: Harness) -> None:
    client = await harness.connect()
    await client.conn.write_message("hello")
    error = await client.receive()
    assert isinstance(error, Error) and error.code == "bad_frame" and "binary" in error.message


async def test_oversized_message_closes_with_4009(harness: Harness) -> None:
    other = await harness.connect()
    await other.hello("bystander", stream="b")
    client = await harness.connect()
    await client.send(bytes(MAX_MESSAGE_BYTES + 1))
    assert await client.conn.read_message() is None
    assert client.conn.close_code == CLOSE_TOO_LARGE
    await other.send(points("bystander", 1, 0, 5))
    await other.until_ack("bystander", 1)
    assert 'labscreen_errors_total{code="too_large"} 1' in (await harness.fetch("/metrics")).body.decode()


@pytest.mark.parametrize("harness", [{"token": "s3cret"}], indirect=True)
async def test_token_required_when_configured(harness: Harness) -> None:
    for token in (None, "wrong"):
        with pytest.raises(HTTPClientError) as info:
            await harness.connect(token)
        assert info.value.code == 401
    client = await harness.connect("s3cret")
    await client.hello("run-t")
    await client.send(points("run-t", 1, 0, 2))
    await client.until_ack("run-t", 1)
    assert 'labscreen_errors_total{code="unauthorized"} 2' in (await harness.fetch("/metrics")).body.decode()


async def test_twenty_producers_at_once_no_loss_no_crosstalk(harness: Harness) -> None:
    async def produce(i: int) -> WireClient:
        client = await harness.connect()
        run = f"many-{i}"
        await client.hello(run, stream=f"s{i}")
        for seq in range(1, 11):
            frame = points(run, seq, (seq - 1) * 50, 50)
            await client.send(Scalars(run, seq, frame.names, frame.steps, frame.wall, frame.index, frame.values + i))
        await client.until_ack(run, 10)
        return client

    await asyncio.gather(*(produce(i) for i in range(20)))
    for i in range(20):
        series = harness.server.store.scalars(f"many-{i}", "loss")
        np.testing.assert_array_equal(series.steps, np.arange(500))
        np.testing.assert_allclose(series.values, np.sin(np.arange(500.0)) + i)


@pytest.mark.parametrize("harness", [{"max_series_per_run": 3}], indirect=True)
async def test_series_per_run_limit(harness: Harness) -> None:
    client = await harness.connect()
    await client.hello("wide")
    await client.send(points("wide", 1, 0, 2, ("a", "b")))
    await client.until_ack("wide", 1)
    await client.send(points("wide", 2, 2, 2, ("c", "d")))
    error = await client.receive()
    assert isinstance(error, Error) and error.code == "limit_exceeded" and "max_series_per_run=3" in error.message
    await client.send(points("wide", 3, 4, 2, ("a", "c")))
    await client.until_ack("wide", 3)
    metrics = (await harness.fetch("/metrics")).body.decode()
    assert 'labscreen_errors_total{code="limit_exceeded"} 1' in metrics


@pytest.mark.parametrize("harness", [{"max_runs_per_connection": 2, "max_producers": 2}], indirect=True)
async def test_runs_per_connection_and_producer_limits(harness: Harness) -> None:
    client = await harness.connect()
    await client.hello("one")
    await client.hello("two")
    await client.send(Hello(run="three", stream="s1"))
    error = await client.receive()
    assert isinstance(error, Error) and error.code == "limit_exceeded" and "2 runs" in error.message
    await harness.connect()
    with pytest.raises(HTTPClientError) as info:
        await harness.connect()
    assert info.value.code == 503
