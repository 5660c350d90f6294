"""Load benchmark: many concurrent producers and live viewers on one labscreen server.

Three processes, so that none steals the others' interpreter:

* the server: ``python -m monitor.cli serve --port 0 --store TMP --log-level WARNING``
  with its default limits (``scripts/bench_servers.py`` starts and stops it);
* the viewers (this script with ``--viewer-process``): ``--viewers`` dashboard
  sessions, each a websocket on Bokeh's ``/ws`` speaking Bokeh's protocol
  (``bokeh.protocol``: ACK, PULL-DOC-REQ, then every PATCH-DOC the server
  pushes), as a browser tab would, but without applying the patches to a
  client-side Document: the server does all of a real session's work, the
  client only reads and decodes messages. They connect before the producers
  start and read until the producers are done;
* the producers (this script with ``--producer-process``): ``--producers``
  raw websocket producers on one asyncio loop (``tornado.websocket``), each
  its own run: a hello, then ``--frames`` small scalar frames (one step of 4
  metrics each) pipelined with at most ``--depth`` unacknowledged. All start
  together once every one has its welcome.

Reported: frames/s and points/s from the first send to the last ack; ack
latency (send of a frame to the ack that covers it; acks mean committed to
SQLite) percentiles over every frame; server peak RSS (``VmHWM``) and CPU;
viewer update rates; and what the store holds against what was acknowledged:
points lost and duplicated (both must be 0). The server is stopped with
SIGTERM before the store is read.

Usage::

    .venv/bin/python scripts/bench_load.py                 # 100 producers x 10,000 frames, 20 viewers
    .venv/bin/python scripts/bench_load.py --quick         # smoke run: 10 x 200, 3 viewers
    .venv/bin/python scripts/bench_load.py --producers 50 --frames 2000 --viewers 10

Prints a markdown table on stdout, progress on stderr; exits 1 if a point is
lost or duplicated, a frame is refused, or a process fails. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from bench_servers import ServerProcess, labscreen_server  # noqa: E402
from bokeh.client.websocket import WebSocketClientConnectionWrapper  # noqa: E402
from bokeh.protocol import Protocol  # noqa: E402
from bokeh.protocol.receiver import Receiver  # noqa: E402
from bokeh.util.token import generate_jwt_token, generate_session_id  # noqa: E402
from tornado.websocket import WebSocketClientConnection, websocket_connect  # noqa: E402

from monitor.store import SQLiteStore  # noqa: E402
from monitor.wire import Ack, Error, Hello, Scalars, Welcome, decode, encode  # noqa: E402

METRICS = ("loss", "accuracy", "learning_rate", "grad_norm")
VIEWER_MAX_MESSAGE = 256 * 1024 * 1024
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """A process failed, the server refused a frame, or a connection closed."""


class AckWindow:
    """One producer's highest acknowledged seq, awaitable."""

    def __init__(self) -> None:
        self.seq = 0
        self.error: BaseException | None = None
        self._event = asyncio.Event()

    def advance(self, seq: int) -> None:
        self.seq = max(self.seq, seq)
        self._event.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self._event.set()

    async def wait_until(self, seq: int) -> None:
        while self.seq < seq:
            if self.error is not None:
                raise self.error
            self._event.clear()
            await self._event.wait()


class Producer:
    """One run: frames built and sent on demand, send and ack times recorded per seq."""

    def __init__(self, url: str, index: int, frames: int, depth: int) -> None:
        self.url = url
        self.run = f"load-{index:04d}"
        self.frames = frames
        self.depth = depth
        self.sent_at = np.zeros(frames)
        self.latency = np.full(frames, np.nan)
        self.window = AckWindow()
        self._index = np.arange(len(METRICS), dtype=np.int64)
        self._values = np.random.default_rng(index).random(len(METRICS))
        self.conn: WebSocketClientConnection | None = None

    async def connect(self) -> None:
        """Open the connection and say hello; returns after the welcome."""
        self.conn = await websocket_connect(self.url, connect_timeout=60)
        await self.conn.write_message(encode(Hello(run=self.run, stream="load", framework="bench")), binary=True)
        reply = await self.conn.read_message()
        if not isinstance(reply, bytes) or not isinstance(decode(reply), Welcome):
            raise BenchError(f"{self.run}: hello answered with {reply!r:.200}")

    def frame(self, seq: int) -> bytes:
        steps = np.full(len(METRICS), seq - 1, dtype=np.int64)
        wall = np.full(len(METRICS), time.time())
        return encode(Scalars(self.run, seq, METRICS, steps, wall, self._index, self._values + seq))

    async def send_all(self) -> None:
        """Pipeline every frame, at most ``depth`` unacknowledged; return once the last is acknowledged."""
        assert self.conn is not None
        reader = asyncio.ensure_future(self._read_acks())
        for seq in range(1, self.frames + 1):
            await self.window.wait_until(seq - self.depth)
            data = self.frame(seq)
            self.sent_at[seq - 1] = time.perf_counter()
            await self.conn.write_message(data, binary=True)
        await self.window.wait_until(self.frames)
        await reader

    async def _read_acks(self) -> None:
        assert self.conn is not None
        try:
            while self.window.seq < self.frames:
                data = await self.conn.read_message()
                if not isinstance(data, bytes):
                    raise BenchError(f"{self.run}: closed ({self.conn.close_code} {self.conn.close_reason})")
                reply = decode(data)
                if isinstance(reply, Error):
                    raise BenchError(f"{self.run}: seq {reply.seq} refused: {reply.code}: {reply.message}")
                if isinstance(reply, Ack) and reply.seq > self.window.seq:
                    done = slice(self.window.seq, reply.seq)
                    self.latency[done] = time.perf_counter() - self.sent_at[done]
                    self.window.advance(reply.seq)
        except Exception as exc:
            self.window.fail(exc)

    async def close(self) -> None:
        if self.conn is None:
            return
        self.conn.close()
        try:
            while await asyncio.wait_for(self.conn.read_message(), 5) is not None:
                pass
        except asyncio.TimeoutError:
            pass


async def run_producers(url: str, count: int, frames: int, depth: int) -> dict[str, Any]:
    """Connect every producer, then start them together; times and latencies as a JSON-able dict."""
    producers = [Producer(url, i, frames, depth) for i in range(count)]
    for start in range(0, count, 20):  # connect in small waves, not as a SYN flood
        await asyncio.gather(*(p.connect() for p in producers[start : start + 20]))
    progress(f"{count} producers connected; sending")
    cpu, start = time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(p.send_all() for p in producers))
        seconds = time.perf_counter() - start
    finally:
        await asyncio.gather(*(p.close() for p in producers))
    latency = np.concatenate([p.latency for p in producers]) * 1e3
    return {
        "frames": count * frames,
        "seconds": seconds,
        "latency_ms": {q: float(np.percentile(latency, q)) for q in (50, 90, 99)} | {"max": float(latency.max())},
        "client_cpu": time.process_time() - cpu,
        "runs": [p.run for p in producers],
    }


class Viewer:
    """One dashboard session over Bokeh's websocket protocol; counts what the server pushes."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("http", "ws", 1) + "/ws"
        self.protocol = Protocol()
        self.receiver = Receiver(self.protocol)
        self.counts: dict[str, int] = {}
        self.bytes = 0
        self.pulled = asyncio.Event()
        self.closed: str | None = None
        self.conn: WebSocketClientConnection | None = None

    async def run(self) -> None:
        token = generate_jwt_token(generate_session_id(), secret_key=None, signed=False)
        self.conn = await websocket_connect(
            self.url, subprotocols=["bokeh", token], max_message_size=VIEWER_MAX_MESSAGE, connect_timeout=60
        )
        while True:
            fragment = await self.conn.read_message()
            if fragment is None:
                self.closed = f"closed: {self.conn.close_code} {self.conn.close_reason}"
                if not self.pulled.is_set():
                    raise BenchError(f"viewer {self.closed} before it had its document")
                return
            self.bytes += len(fragment)
            message = await self.receiver.consume(fragment)
            if message is None:
                continue
            kind = message.msgtype
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "ACK":  # the server's session is ready: ask for the document, as BokehJS does
                await self.protocol.create("PULL-DOC-REQ").send(WebSocketClientConnectionWrapper(self.conn))
            elif kind == "PULL-DOC-REPLY":
                self.pulled.set()
            elif kind == "ERROR":
                raise BenchError(f"viewer got an error: {message.content}")


async def run_viewers(url: str, count: int) -> dict[str, Any]:
    """Open the sessions, say ``ready`` on stdout, read until SIGTERM; stats as a JSON-able dict."""
    viewers = [Viewer(url) for _ in range(count)]
    tasks = [asyncio.ensure_future(v.run()) for v in viewers]
    pulled = asyncio.gather(*(v.pulled.wait() for v in viewers))
    # Until every viewer has its document, or one of them fails (a viewer task only ends early by failing).
    done, _ = await asyncio.wait([pulled, *tasks], timeout=180, return_when=asyncio.FIRST_COMPLETED)
    if pulled not in done:
        pulled.cancel()
        failed = [t.exception() for t in tasks if t.done() and t.exception()]
        raise BenchError(f"viewers did not all get their document: {failed[:3]}")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    before = [dict(v.counts) for v in viewers]
    print("ready", flush=True)
    start = time.perf_counter()
    await stop.wait()
    seconds = time.perf_counter() - start
    patches = [v.counts.get("PATCH-DOC", 0) - b.get("PATCH-DOC", 0) for v, b in zip(viewers, before, strict=True)]
    rates = sorted(n / seconds for n in patches)
    result = {
        "viewers": count,
        "seconds": seconds,
        "patch_rates": rates,
        "bytes": sum(v.bytes for v in viewers),
        "closed_early": [v.closed for v in viewers if v.closed is not None],
    }
    for viewer in viewers:
        if viewer.conn is not None:
            viewer.conn.close()
    await asyncio.wait(tasks, timeout=10)
    return result


def rss_mib(pid: int, field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} for pid {pid}")


def _child(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=REPO)


def progress(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _wait_line(proc: subprocess.Popen[str], what: str, timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise BenchError(f"{what} printed nothing within {timeout:g} s (exit status {proc.wait()})")
    return line


def check_store(path: Path, runs: list[str], frames: int) -> tuple[int, int]:
    """Points lost and points stored twice, over every run and metric."""
    store = SQLiteStore(path)
    expected = np.arange(frames)
    lost = duplicated = 0
    try:
        for run in runs:
            for name in METRICS:
                steps = store.scalars(run, name).steps
                lost += len(np.setdiff1d(expected, steps))
                duplicated += len(steps) - len(np.unique(steps))
    finally:
        store.close()
    return lost, duplicated


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run the three processes and collect every number."""
    store = tmp / "load.sqlite"
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    server: ServerProcess = labscreen_server(store, lifted=False).start()
    viewers = producers = None
    try:
        url = f"http://127.0.0.1:{server.port}"
        progress(f"server on {url} (pid {server.pid})")
        if args.viewers:
            viewers = _child(["--viewer-process", url, "--viewers", str(args.viewers)])
            _wait_line(viewers, "the viewer process", 240)
        rss_idle = rss_mib(server.pid, "VmRSS")
        progress(f"{args.viewers} viewers have their documents; server RSS {rss_idle:.0f} MiB")
        cpu = server.cpu_seconds()
        sampler = _RssSampler(server.pid)
        producers = _child(["--producer-process", url, *_producer_args(args)])
        sent = json.loads(_wait_line(producers, "the producer process", args.timeout))
        server_cpu = server.cpu_seconds() - cpu
        progress(f"producers done: {sent['frames']:,} frames in {sent['seconds']:.1f} s")
        sampler.stop()
        rss_peak = rss_mib(server.pid, "VmHWM")
        seen = {"viewers": 0, "patch_rates": [0.0], "closed_early": []}
        if viewers is not None:
            viewers.send_signal(signal.SIGTERM)
            seen = json.loads(_wait_line(viewers, "the viewer process", 60))
    finally:
        for proc in (producers, viewers):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait()
        server.stop()
    progress("server stopped; reading the store")
    lost, duplicated = check_store(store, sent["runs"], args.frames)
    return {
        "sent": sent,
        "seen": seen,
        "server_cpu": server_cpu,
        "rss_idle": rss_idle,
        "rss_peak": rss_peak,
        "rss_sampled_peak": sampler.peak,
        "lost": lost,
        "load_before": load_before,
        "duplicated": duplicated,
    }


class _RssSampler:
    """Samples a process's RSS every 0.2 s from a thread (VmHWM gives the true peak; this shows the load phase)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_mib(self.pid, "VmRSS"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _producer_args(args: argparse.Namespace) -> list[str]:
    return ["--producers", str(args.producers), "--frames", str(args.frames), "--depth", str(args.depth)]


def table(args: argparse.Namespace, r: dict[str, Any]) -> list[str]:
    sent, seen, lat = r["sent"], r["seen"], r["sent"]["latency_ms"]
    rates = seen["patch_rates"]
    fps = sent["frames"] / sent["seconds"]
    latency = f"{lat['50']:.0f} / {lat['90']:.0f} / **{lat['99']:.0f}** / {lat['max']:.0f}"
    updates = f"{rates[0]:.1f} / {rates[len(rates) // 2]:.1f} / {rates[-1]:.1f}"
    rows = [
        ("producers x frames (points/frame)", f"{args.producers} x {args.frames:,} ({len(METRICS)})"),
        ("viewer sessions", f"{seen['viewers']} (Bokeh protocol over /ws, patches decoded, not applied)"),
        ("frames acknowledged", f"{sent['frames']:,}"),
        ("seconds, first send to last ack", f"{sent['seconds']:.1f}"),
        ("**frames/s**", f"**{fps:,.0f}**"),
        ("points/s", f"{fps * len(METRICS):,.0f}"),
        ("ack latency p50 / p90 / **p99** / max (ms)", latency),
        ("server RSS with viewers, before load (MiB)", f"{r['rss_idle']:.0f}"),
        ("**server RSS peak** (VmHWM, MiB)", f"**{r['rss_peak']:.0f}**"),
        ("server CPU during load (cores)", f"{r['server_cpu'] / sent['seconds']:.2f}"),
        ("producer process CPU (cores)", f"{sent['client_cpu'] / sent['seconds']:.2f}"),
        ("viewer updates/s per session: min / median / max", updates),
        ("viewer sessions closed early", str(len(seen["closed_early"]))),
        ("**points lost**", f"**{r['lost']:,}**"),
        ("points stored twice", f"{r['duplicated']:,}"),
    ]
    return ["| measure | value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)]


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print("## labscreen under load\n")
    print(f"CPUs: {os.cpu_count()} | Python {platform.python_version()} | {platform.platform()}")
    after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Load average (1/5/15 min) before: {r['load_before']}; after: {after}\n")
    print(
        f"Method: server, viewers and producers are three processes. {args.producers} raw websocket producers "
        f"(one asyncio loop) each send {args.frames:,} scalar frames of one step x {len(METRICS)} metrics, at most "
        f"{args.depth} unacknowledged, as fast as acks allow; an ack means committed to SQLite. Server at its "
        "default limits. Latency: from a frame's send to the ack covering it, over every frame."
        + (" QUICK RUN: too small to be a measurement." if args.quick else "")
    )
    print()
    for line in table(args, r):
        print(line)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Load-test labscreen: concurrent producers plus live viewers.")
    parser.add_argument("--producers", type=int, default=100, help="concurrent producers (default 100)")
    parser.add_argument("--frames", type=int, default=10_000, help="frames per producer (default 10000)")
    parser.add_argument("--viewers", type=int, default=20, help="viewer sessions (default 20)")
    parser.add_argument("--depth", type=int, default=32, help="most unacknowledged frames per producer (default 32)")
    parser.add_argument("--timeout", type=float, default=3600, help="longest wait for the producers, seconds")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 producers x 200 frames, 3 viewers")
    parser.add_argument("--producer-process", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--viewer-process", metavar="URL", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.producer_process:
        ws = args.producer_process.replace("http", "ws", 1) + "/ws/ingest"
        print(json.dumps(asyncio.run(run_producers(ws, args.producers, args.frames, args.depth))), flush=True)
        return 0
    if args.viewer_process:
        print(json.dumps(asyncio.run(run_viewers(args.viewer_process, args.viewers))), flush=True)
        return 0
    if args.quick:
        args.producers, args.frames, args.viewers = 10, 200, 3
    with tempfile.TemporaryDirectory(prefix="labscreen-load-") as tmp:
        try:
            result = measure(args, Path(tmp))
        except BenchError as exc:
            print(f"bench_load: {exc}", file=sys.stderr)
            return 1
    report(args, result)
    return 1 if result["lost"] or result["duplicated"] or result["seen"]["closed_early"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
