"""Hypothesis-driven bad input at scale against a live server.

At least 10,000 generated and mutated frames (valid frames with fields
flipped, truncated, extended, wrong dtypes and shapes, random bytes, huge
declared sizes) go to a real server. Every frame must be answered with an
``error``, an ``ack`` or a ``welcome``; the server must stay up; and a
well-behaved producer on the same server meanwhile loses nothing. The same
for HTTP ingest and the REST endpoints.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.websocket import websocket_connect

from monitor.wire import Error, Event, Finish, Hello, Histogram, Predictions, Scalars, decode, encode
from tests.monitor.harness import WireClient
from tests.serving import ServerThread

EXAMPLES_PER_TEST = 200
FRAMES_PER_EXAMPLE = 50  # 200 x 50 = 10,000 frames

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def valid_frame(kind: int, seq: int) -> bytes:
    n = 4
    frames: list[Any] = [
        Scalars("fuzz", seq, ("a", "b"), np.arange(n), np.zeros(n), np.arange(n, dtype=np.int32) % 2, np.ones(n)),
        Histogram("fuzz", seq, "h", seq, 1.0, np.linspace(0, 1, 5), np.ones(4), 0.0, 1.0, 0.5, 0.1, 4, 0),
        Predictions("fuzz", seq, "p", seq, 1.0, "classification", np.array([0, 1]), np.eye(2)),
        Event("fuzz", seq, seq, 1.0, "info", "hello"),
        Finish("fuzz", seq, 1.0, "finished"),
    ]
    return encode(frames[kind % len(frames)])


def split(frame: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack_from("<I", frame)
    return json.loads(frame[4 : 4 + length]), frame[4 + length :]


def join(header: Any, body: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + body


HOWS = ("flip", "truncate", "extend", "field", "array", "random", "huge", "valid")
NASTY: list[Any] = [
    None,
    True,
    False,
    -1,
    0,
    2**31,
    2**63,
    -(2**70),
    1e308,
    -0.0,
    "",
    "x" * 300,
    "NaN",
    "<f8",
    [],
    {},
    [1, [2, [3]]],
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
    ["a", 1, None],
    "\u0000",
    "../../etc/passwd",
]
NASTY_DTYPES = ["<c16", ">f8", "object", "<U4", "f", 12, "<f8", "|b1", "V8", "<m8[s]"]


def mutate(kind: int, how: str, seed: int, seq: int) -> bytes:
    """One frame: a valid frame of ``kind`` damaged as ``how`` says, deterministically from ``seed``."""
    rng = random.Random(seed)
    frame = valid_frame(kind, seq)
    if how == "flip":
        data = bytearray(frame)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        return bytes(data)
    if how == "truncate":
        return frame[: rng.randrange(len(frame))]
    if how == "extend":
        return frame + rng.randbytes(rng.randint(1, 64))
    if how == "random":
        return rng.randbytes(rng.randint(0, 512))
    header, body = split(frame)
    if how == "field":
        target = header["fields"] if header["fields"] and rng.random() < 0.7 else header
        target[rng.choice(sorted(target))] = rng.choice(NASTY)
    elif how == "array" and header["arrays"]:
        desc = rng.choice(header["arrays"])
        key = rng.choice(["dtype", "shape", "offset", "nbytes", "name"])
        desc[key] = rng.choice(NASTY_DTYPES) if key == "dtype" else rng.choice(NASTY)
    elif how == "huge" and header["arrays"]:
        header["arrays"][0]["shape"] = [2**40]
        header["arrays"][0]["nbytes"] = 2**43
    return join(header, body)


PLANS = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(HOWS), st.integers(0, 2**32)),
    min_size=FRAMES_PER_EXAMPLE,
    max_size=FRAMES_PER_EXAMPLE,
)


class Bystander:
    """A well-behaved producer on its own thread and loop, sending until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:
            self.failure = exc

    async def _produce(self) -> None:
        client = WireClient(await websocket_connect(self.url.replace("http", "ws") + "/ws/ingest"))
        await client.hello("bystander", stream="good")
        seq = 0
        while not self.stop.is_set():
            seq += 1
            steps = np.arange(self.sent, self.sent + 10, dtype=np.int64)
            await client.send(
                Scalars("bystander", seq, ("x",), steps, np.zeros(10), np.zeros(10, np.int32), steps * 1.0)
            )
            await client.until_ack("bystander", seq)
            self.sent += 10
        await client.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ServerThread, Bystander]]:
    with ServerThread(tmp_path / "fuzz.sqlite", max_frames_per_second=1e9) as server:
        bystander = Bystander(server.url)
        bystander.thread.start()
        yield server, bystander
        bystander.stop.set()
        bystander.thread.join(30)
        assert bystander.failure is None, bystander.failure
        store = server.running.store
        assert store.flush(10)
        series = store.scalars("bystander", "x")
        np.testing.assert_array_equal(series.steps, np.arange(bystander.sent))
        assert (series.values == series.steps).all()


async def fire(url: str, frames: list[bytes], stream: str) -> list[str]:
    client = WireClient(await websocket_connect(url.replace("http", "ws") + "/ws/ingest"))
    try:
        await client.hello("fuzz", stream=stream)
        kinds = []
        for frame in frames:
            await client.send(frame)
            reply = await client.receive(timeout=20)
            kinds.append(reply.kind)
            if isinstance(reply, Error):
                assert reply.code and reply.message
        return kinds
    finally:
        await client.close()


@pytest.mark.timeout(600)
def test_ten_thousand_mutated_frames(live: tuple[ServerThread, Bystander]) -> None:
    server, bystander = live
    seen: dict[str, int] = {}
    streams = iter(range(10**9))

    @settings(max_examples=EXAMPLES_PER_TEST, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(PLANS)
    def example(plan: list[tuple[int, str, int]]) -> None:
        frames = [mutate(kind, how, seed, seq) for seq, (kind, how, seed) in enumerate(plan, start=1)]
        for kind in asyncio.run(fire(server.url, frames, f"fuzzer-{next(streams)}")):
            seen[kind] = seen.get(kind, 0) + 1

    example()
    assert sum(seen.values()) >= 10_000
    assert set(seen) <= {"error", "ack", "welcome"} and seen.get("error", 0) > 1000
    assert bystander.sent > 0
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as reply:
        assert reply.status == 200


def status_of(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=20) as reply:
            json.loads(reply.read() or b"{}") if "csv" not in url else reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as err:
        if err.code != 404 or "/api/" in url:
            body = err.read()
            if err.headers.get("Content-Type", "").startswith("application/json"):
                assert "error" in json.loads(body)
        return err.code


SEGMENTS = st.sampled_from(["..", "%2e%2e", "%00", "ghost", "bystander", "x" * 300, "%ff", "a/b", "-", "scalars", ""])
QUERY = st.dictionaries(
    st.sampled_from(["start", "end", "max_points", "limit", "format", "name", "token"]),
    st.sampled_from(["-1", "0", "1", "99999999999999999999", "1e9", "abc", "csv", "json", "", "%00", "2"]),
    max_size=4,
)


@pytest.mark.timeout(600)
def test_http_ingest_and_rest_under_garbage(live: tuple[ServerThread, Bystander]) -> None:
    server, _ = live
    codes: dict[int, int] = {}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        path=st.lists(SEGMENTS, min_size=1, max_size=4),
        tail=st.sampled_from(
            ["", "/scalars", "/scalars/x", "/histograms/h", "/events", "/graph", "/data", "/predictions"]
        ),
        query=QUERY,
        body=JSON_VALUES | st.binary(max_size=200),
    )
    def example(path: list[str], tail: str, query: dict[str, str], body: Any) -> None:
        url = server.url + "/api/runs/" + "/".join(path) + tail + "?" + urllib.parse.urlencode(query, safe="%")
        code = status_of(url)
        codes[code] = codes.get(code, 0) + 1
        assert code in (200, 400, 404), url
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        code = status_of(server.url + "/api/ingest", raw)
        assert code in (200, 400), raw
        codes[code] = codes.get(code, 0) + 1

    example()
    assert codes.get(400, 0) > 0 and codes.get(404, 0) > 0
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as reply:
        assert reply.status == 200
    assert decode(encode(Hello(run="still", stream="ok"))).kind == "hello"
