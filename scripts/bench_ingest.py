"""Benchmark: websocket ingest into SQLite, side by side with a bare Tornado websocket server.

Starts ``labscreen serve`` as a subprocess on a temporary SQLite store and, as
the transport's ceiling, a bare Tornado websocket server (this script with
``--bare-server``, see ``bench_servers``) that only counts and acknowledges
each binary message. This process is the client: it pre-encodes every
frame, then pipelines them over one connection with a bounded number of
unacknowledged frames, timing from the first send until the acknowledgement
of the last frame. A labscreen ack means committed to SQLite; a bare ack
means received.

Each case is sized by a short pilot so that it runs for about ``--seconds``
(half that for one-point frames); the labscreen servers and the bare server
receive the very same encoded messages, after the same untimed warm-up on
the same connection. Labscreen runs twice by default, with its default
per-connection frame-rate limit and with that limit lifted, so the table
tells the policy cap from the pipeline's capacity.

Usage::

    .venv/bin/python scripts/bench_ingest.py              # full run, about two minutes
    .venv/bin/python scripts/bench_ingest.py --quick      # smoke run, numbers not meaningful
    .venv/bin/python scripts/bench_ingest.py --bare-server --port 0   # only the bare server

Prints a markdown table on stdout and progress on stderr; exits 1 if a
server refuses a frame or does not start. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tornado
from bench_servers import (
    WEBSOCKET_MAX_BYTES,
    ServerProcess,
    StartError,
    bare_ack,
    bare_server,
    labscreen_server,
    serve_bare,
)
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from monitor.wire import Ack, Error, Hello, Histogram, Message, Predictions, Scalars, decode, encode

SCALAR_TARGET = 100_000
"""Scalar points per second that batched frames must sustain."""
ARRAY_RATIO_TARGET = 0.5
"""Fraction of the bare websocket byte rate that array frames must reach."""
METRICS = ("loss", "accuracy", "val_loss", "learning_rate")
POOL = 8
"""Distinct array payloads per case; frames differ in seq, step and which payload they carry."""

Kind = Literal["scalars", "histogram", "predictions"]
AckReader = Callable[[bytes], int]


class BenchError(RuntimeError):
    """A server refused a frame or closed the connection."""


@dataclass(frozen=True)
class Case:
    """One kind of frame to measure."""

    key: str
    """Short name for ``--case``."""
    label: str
    kind: Kind
    points: int
    """Scalar points per frame (0 for array frames)."""
    pilot: int
    """Frames in the sizing pilot, and the fewest frames timed."""
    share: float = 1.0
    """Fraction of ``--seconds`` the case aims to run."""

    @property
    def table(self) -> str:
        """What the store counts: scalar points (kept in ``scalar_chunks``), or rows of an array table."""
        return {"scalars": "scalars", "histogram": "histograms", "predictions": "predictions"}[self.kind]


CASES = (
    Case("scalars-1", "scalars, 1 point/frame", "scalars", 1, 400, 0.5),
    Case("scalars-100", "scalars, 100 points/frame", "scalars", 100, 200),
    Case("scalars-1000", "scalars, 1,000 points/frame", "scalars", 1000, 40),
    Case("histogram", "histogram, 64 bins", "histogram", 0, 400),
    Case("predictions", "predictions, 256x10 f32 + emb", "predictions", 0, 200),
)


@dataclass(frozen=True)
class FrameSet:
    """Pre-encoded frames of one run: warm-up frames, then timed frames, seqs from 1.

    Seqs count per (run, stream), so the same frames can be sent again after
    a hello that names another stream.
    """

    run: str
    warm: list[bytes]
    timed: list[bytes]

    def hello(self, stream: str) -> bytes:
        return encode(Hello(run=self.run, stream=stream, framework="bench"))

    @property
    def timed_bytes(self) -> int:
        return sum(len(frame) for frame in self.timed)


@dataclass(frozen=True)
class Timing:
    """One timed run: wall seconds, and CPU seconds of the server and this client over it."""

    frames: int
    nbytes: int
    seconds: float
    server_cpu: float
    client_cpu: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def mbps(self) -> float:
        return self.nbytes / self.seconds / 1e6


class FrameFactory:
    """Builds each case's wire messages; array payloads come from a small fixed pool."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(POOL, 256, 10))
        self._probs = list((np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)).astype(np.float32))
        self._labels = list(rng.integers(0, 10, size=(POOL, 256), dtype=np.int64))
        self._embeddings = list(rng.normal(size=(POOL, 256, 2)).astype(np.float32))
        self._counts = list(rng.integers(0, 10_000, size=(POOL, 64)).astype(np.float64))
        self._edges = np.linspace(-1.0, 1.0, 65)
        self._values = rng.normal(size=4096)
        self._classes = tuple(f"class_{c}" for c in range(10))

    def load(self, case: Case, run: str, warm: int, timed: int) -> FrameSet:
        """Encode ``warm + timed`` frames of ``run``."""
        frames = [encode(self.message(case, run, seq)) for seq in range(1, warm + timed + 1)]
        return FrameSet(run, frames[:warm], frames[warm:])

    def message(self, case: Case, run: str, seq: int) -> Message:
        if case.kind == "scalars":
            return self._scalars(run, seq, case.points)
        if case.kind == "histogram":
            return self._histogram(run, seq)
        return self._predictions(run, seq)

    def _scalars(self, run: str, seq: int, points: int) -> Scalars:
        """Long form: consecutive steps, each with up to ``len(METRICS)`` metrics."""
        width = min(len(METRICS), points)
        steps_per_frame = -(-points // width)
        first = (seq - 1) * steps_per_frame
        steps = np.repeat(np.arange(first, first + steps_per_frame, dtype=np.int64), width)[:points]
        index = np.tile(np.arange(width, dtype=np.int64), steps_per_frame)[:points]
        values = np.roll(self._values, seq)[:points]
        return Scalars(run, seq, METRICS[:width], steps, 1.7e9 + steps * 1e-3, index, values)

    def _histogram(self, run: str, seq: int) -> Histogram:
        counts = self._counts[seq % POOL]
        name = f"dense_{seq % 4}/kernel"
        return Histogram(run, seq, name, seq, 1.7e9 + seq, self._edges, counts, -1.0, 1.0, 0.0, 0.5, 10_000, 0)

    def _predictions(self, run: str, seq: int) -> Predictions:
        i = seq % POOL
        probs, labels, embedding = self._probs[i], self._labels[i], self._embeddings[i]
        return Predictions(run, seq, "val", seq, 1.7e9 + seq, "classification", labels, probs, self._classes, embedding)


class _AckWindow:
    """The highest acknowledged seq, and a way to wait for a given seq to be acknowledged."""

    def __init__(self) -> None:
        self.seq = 0
        self.error: BaseException | None = None
        self._event = asyncio.Event()

    def advance(self, seq: int) -> None:
        if seq > self.seq:
            self.seq = seq
            self._event.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self._event.set()

    async def wait_until(self, seq: int) -> None:
        """Return once ``seq`` is acknowledged; raises what the ack reader failed with."""
        while self.seq < seq:
            if self.error is not None:
                raise self.error
            self._event.clear()
            await self._event.wait()


def labscreen_ack(data: bytes) -> int:
    """The seq a labscreen reply acknowledges (a welcome acknowledges 0).

    Raises:
        BenchError: the reply is an ``error`` frame.
    """
    reply = decode(data)
    if isinstance(reply, Error):
        raise BenchError(f"labscreen refused run={reply.run} seq={reply.seq}: {reply.code}: {reply.message}")
    return reply.seq if isinstance(reply, Ack) else 0


async def _read_acks(conn: WebSocketClientConnection, ack_of: AckReader, window: _AckWindow, last: int) -> None:
    try:
        while window.seq < last:
            data = await conn.read_message()
            if not isinstance(data, bytes):
                raise BenchError(f"connection closed: code={conn.close_code} reason={conn.close_reason}")
            window.advance(ack_of(data))
    except Exception as exc:
        window.fail(exc)


async def _pipeline(
    conn: WebSocketClientConnection, window: _AckWindow, frames: list[bytes], first: int, depth: int
) -> None:
    """Send ``frames`` (seqs from ``first``), at most ``depth`` unacknowledged; wait for the last ack."""
    for seq, frame in enumerate(frames, first):
        await window.wait_until(seq - depth)
        await conn.write_message(frame, binary=True)
    await window.wait_until(first + len(frames) - 1)


async def drive(
    server: ServerProcess, frames: FrameSet, stream: str, depth: int, ack_of: AckReader, *, timeout: float = 600.0
) -> Timing:
    """Open a connection, send a hello for ``stream`` and the warm-up frames, then time the timed frames.

    Raises:
        BenchError: the server refused a frame, closed the connection, or
            took longer than ``timeout`` seconds for everything.
    """
    try:
        return await asyncio.wait_for(_drive(server, frames, stream, depth, ack_of), timeout)
    except asyncio.TimeoutError as exc:
        raise BenchError(f"{server.label} took over {timeout:g} s for {frames.run} (stream {stream})") from exc
    except (OSError, StreamClosedError, WebSocketClosedError) as exc:
        raise BenchError(f"{server.label} connection failed: {type(exc).__name__}: {exc}") from exc


async def _drive(server: ServerProcess, frames: FrameSet, stream: str, depth: int, ack_of: AckReader) -> Timing:
    conn = await websocket_connect(server.url, max_message_size=WEBSOCKET_MAX_BYTES)
    try:
        await conn.write_message(frames.hello(stream), binary=True)
        reply = await conn.read_message()
        if not isinstance(reply, bytes) or ack_of(reply) != 0:
            raise BenchError(f"{server.label} answered the hello with {reply!r:.200}")
        window = _AckWindow()
        reader = asyncio.ensure_future(_read_acks(conn, ack_of, window, len(frames.warm) + len(frames.timed)))
        await _pipeline(conn, window, frames.warm, 1, depth)
        cpu, client, start = server.cpu_seconds(), time.process_time(), time.perf_counter()
        await _pipeline(conn, window, frames.timed, len(frames.warm) + 1, depth)
        seconds = time.perf_counter() - start
        timing = Timing(
            len(frames.timed), frames.timed_bytes, seconds, server.cpu_seconds() - cpu, time.process_time() - client
        )
        await reader
        return timing
    finally:
        await _close(conn)


async def _close(conn: WebSocketClientConnection) -> None:
    """Close and wait (5 s at most) until the server has closed too."""
    conn.close()
    try:
        while await asyncio.wait_for(conn.read_message(), 5) is not None:
            pass
    except asyncio.TimeoutError:
        pass


@dataclass(frozen=True)
class Row:
    """Every measurement of one case: each labscreen server's and the bare server's."""

    case: Case
    frame_bytes: float
    labscreen: dict[str, Timing]
    bare: Timing


class Bench:
    """Runs every case against every server, one connection at a time."""

    def __init__(self, args: argparse.Namespace, servers: list[ServerProcess], bare: ServerProcess) -> None:
        self.args = args
        self.servers = servers
        self.bare = bare
        self.factory = FrameFactory()
        self.stored: dict[str, Counter[str]] = defaultdict(Counter)
        """Rows each server should hold, by table: one per scalar point or array frame."""

    def depth(self, frame_bytes: float) -> int:
        """Most frames in flight: ``--depth``, fewer if they would exceed ``--depth-bytes``."""
        depth: int = self.args.depth
        return max(2, min(depth, int(self.args.depth_bytes // frame_bytes)))

    async def run(self) -> list[Row]:
        rows = []
        for case in (c for c in CASES if c.key in self.args.case):
            print(f"  {case.label} ...", file=sys.stderr, flush=True)
            rows.append(await self.run_case(case))
        return rows

    async def run_case(self, case: Case) -> Row:
        sample = self.factory.load(case, "sample", 0, 16)
        frame_bytes = sample.timed_bytes / len(sample.timed)
        depth = self.depth(frame_bytes)
        rate = await self.pilot_rate(case, depth)
        budget = int(self.args.max_mb * 1e6 / frame_bytes)
        timed = max(case.pilot, min(int(rate * self.args.seconds * case.share), budget))
        frames = self.factory.load(case, f"bench-{case.key}", max(case.pilot // 4, timed // 4), timed)
        results = {s.label: await self.best(s, case, frames, depth) for s in self.servers}
        return Row(case, frame_bytes, results, await self.best(self.bare, case, frames, depth))

    async def pilot_rate(self, case: Case, depth: int) -> float:
        """Frames per second of a pilot on the last labscreen server (the unlimited one when both run).

        The pilot doubles until it lasts an eighth of ``--seconds``, three times at most.
        """
        server, count = self.servers[-1], case.pilot
        for attempt in range(4):
            frames = self.factory.load(case, f"pilot-{case.key}-{attempt}", 0, count)
            timing = await drive(server, frames, "pilot", depth, labscreen_ack)
            self.stored[server.label][case.table] += count * max(case.points, 1)
            if timing.seconds >= self.args.seconds / 8:
                break
            count *= 2
        return timing.fps

    async def best(self, server: ServerProcess, case: Case, frames: FrameSet, depth: int) -> Timing:
        """The fastest of ``--repeat`` runs of the same frames, each on a new connection and stream."""
        ack_of = bare_ack if server is self.bare else labscreen_ack
        timings = [await drive(server, frames, f"bench-{n}", depth, ack_of) for n in range(self.args.repeat)]
        sent = len(frames.warm) + len(frames.timed)
        self.stored[server.label][case.table] += self.args.repeat * sent * max(case.points, 1)
        return min(timings, key=lambda t: t.seconds)


def _verdict(row: Row, timing: Timing) -> str:
    if row.case.kind != "scalars":
        ok = timing.mbps >= ARRAY_RATIO_TARGET * row.bare.mbps
        return f"{'PASS' if ok else 'FAIL'} (>= {ARRAY_RATIO_TARGET}x bare)"
    if row.case.points == 1:
        return "- (unbatched)"
    ok = timing.fps * row.case.points >= SCALAR_TARGET
    return f"{'PASS' if ok else 'FAIL'} (>= {SCALAR_TARGET:,} pts/s)"


def _cells(row: Row, t: Timing) -> str:
    points = f"{t.fps * row.case.points:,.0f}" if row.case.points else "-"
    cpu = f"{t.server_cpu / t.seconds:.0%} / {t.client_cpu / t.seconds:.0%}"
    per_frame = f"{t.server_cpu / t.frames * 1e6:,.0f}"
    return f"{t.frames:,} | {t.seconds:.2f} | {points} | {t.fps:,.0f} | {t.mbps:.2f} | {cpu} | {per_frame}"


def table(rows: Sequence[Row]) -> list[str]:
    """The results as markdown table lines."""
    head = (
        "| case | server | bytes/frame | frames timed | seconds | points/s | frames/s | MB/s "
        "| CPU server / client | server CPU µs/frame | labscreen/bare | target |"
    )
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for row in rows:
        start = f"| {row.case.label} | {{}} | {row.frame_bytes:,.0f} | "
        for label, t in row.labscreen.items():
            ratio = t.mbps / row.bare.mbps
            lines.append(start.format(label) + f"{_cells(row, t)} | {ratio:.2f} | {_verdict(row, t)} |")
        lines.append(start.format("bare tornado websocket") + f"{_cells(row, row.bare)} | 1.00 | ceiling |")
    return lines


def environment() -> str:
    """One line naming the machine, the versions measured and the current load."""
    return (
        f"CPUs: {os.cpu_count()} | Python {platform.python_version()} | tornado {tornado.version} "
        f"| numpy {np.__version__} | {platform.platform()}"
    )


def _load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def report(args: argparse.Namespace, rows: Sequence[Row], load_before: str, checks: Sequence[str]) -> None:
    """Print the environment, the method and the table on stdout."""
    print("## labscreen websocket ingest vs bare Tornado websocket\n")
    print(environment())
    print(f"Load average (1/5/15 min) before: {load_before}; after: {_load_average()}\n")
    print(
        f"Targets: >= {SCALAR_TARGET:,} scalar points/s with batched frames (100 and 1,000 points/frame); "
        f"array frames (histogram, predictions) >= {ARRAY_RATIO_TARGET}x the bare websocket MB/s.\n"
    )
    print(
        f"Method: one client connection pipelines at most {args.depth} frames / {args.depth_bytes / 1e6:g} MB "
        "unacknowledged, timed from the first send to the ack of the last frame, after an untimed warm-up of a "
        "quarter as many frames on the same connection (labscreen ack = committed to SQLite, WAL, "
        "synchronous=NORMAL; bare ack = received). Each server and the client are separate processes. "
        f"Best of {args.repeat}. MB = 10^6 bytes of encoded wire messages. "
        f"A scalar point is one (series, step, value); frames carry up to {len(METRICS)} metric names. "
        "CPU: CPU-seconds per wall-second (100% = one core); "
        "server CPU µs/frame is the server process's CPU time (all threads) per timed frame."
        + (" QUICK RUN: too short to be a measurement." if args.quick else "")
    )
    print()
    for line in table(rows):
        print(line)
    print()
    for check in checks:
        print(f"Check: {check}.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark labscreen's websocket ingest against a bare websocket.")
    parser.add_argument("--quick", action="store_true", help="short smoke run (numbers are not meaningful)")
    parser.add_argument("--seconds", type=float, help="timed seconds to aim for per case (default 4; quick 0.3)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per server and case; the best counts")
    parser.add_argument("--depth", type=int, default=128, help="most unacknowledged frames in flight (default 128)")
    parser.add_argument("--depth-bytes", type=float, default=4e6, help="most unacknowledged bytes (default 4e6)")
    parser.add_argument("--max-mb", type=float, default=400.0, help="cap on encoded MB per case (default 400)")
    parser.add_argument(
        "--frame-limit",
        choices=("default", "lifted", "both"),
        default="both",
        help="labscreen's per-connection frame-rate limit: its default, lifted, or a server of each (default both)",
    )
    keys = [case.key for case in CASES]
    parser.add_argument(
        "--case", action="append", choices=keys, help="measure only this case (repeatable; default: all)"
    )
    parser.add_argument("--bare-server", action="store_true", help="only run the bare websocket server")
    parser.add_argument("--port", type=int, default=0, help="port for --bare-server (default 0: any free port)")
    return parser


def _measure(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """Start the servers, run every case, stop the servers and check what their stores hold."""
    lifted = {"default": [False], "lifted": [True], "both": [False, True]}[args.frame_limit]
    with tempfile.TemporaryDirectory(prefix="labscreen-bench-") as tmp:
        stores = {x: Path(tmp) / f"bench-{int(x)}.sqlite" for x in lifted}
        servers = [labscreen_server(store, x) for x, store in stores.items()]
        bare = bare_server(Path(__file__).resolve())
        bench = Bench(args, servers, bare)
        try:
            for server in [*servers, bare]:
                server.start()
                print(f"{server.label}: pid {server.pid}, port {server.port}", file=sys.stderr, flush=True)
            rows = asyncio.run(bench.run())
        finally:
            for server in [*servers, bare]:
                server.stop()
        return rows, [
            _check_store(s.label, stores[x], bench.stored[s.label]) for x, s in zip(lifted, servers, strict=True)
        ]


def _check_store(label: str, store: Path, expected: Counter[str]) -> str:
    """Compare the rows a stopped server's store holds with the rows acknowledged to it."""
    with contextlib.closing(sqlite3.connect(store)) as conn:
        held = {table: _stored_rows(conn, table) for table in expected}
    counts = ", ".join(f"{held[t]:,} {t} rows" for t in expected)
    verdict = "as acknowledged" if held == dict(expected) else f"MISMATCH, acknowledged {dict(expected)}"
    return f"{label}: store holds {counts}: {verdict}"


def _stored_rows(conn: sqlite3.Connection, table: str) -> int:
    """Rows of an array table, or points of ``scalars`` (stored as per-series chunks)."""
    sql = "SELECT coalesce(sum(count), 0) FROM scalar_chunks" if table == "scalars" else f"SELECT count(*) FROM {table}"
    return int(conn.execute(sql).fetchone()[0])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, or with ``--bare-server`` only the bare server; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.bare_server:
        asyncio.run(serve_bare(args.port))
        return 0
    args.case = args.case or [case.key for case in CASES]
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 4.0
    load_before = _load_average()
    print(f"{environment()} | load {load_before}", file=sys.stderr)
    try:
        rows, checks = _measure(args)
    except (BenchError, StartError) as exc:
        print(f"bench_ingest: {exc}", file=sys.stderr)
        return 1
    report(args, rows, load_before, checks)
    return 0 if not any("MISMATCH" in check for check in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
