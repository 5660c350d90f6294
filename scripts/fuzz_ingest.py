"""Long-running fuzz of a live labscreen server: the suite's fuzz test, for longer.

Runs what ``tests/monitor/test_fuzz.py`` runs, with its own mutation code
(imported, not copied): hypothesis plans frames of every kind, damaged by
flipping bytes, truncating, extending, setting fields to nasty values, bad
dtypes and shapes, random bytes and huge declared sizes; each plan goes over
a new websocket connection after a hello, one reply awaited per frame. Then
garbage HTTP ingest and REST requests (bad JSON, bad run ids, path tricks,
huge query values). A well-behaved bystander producer sends scalars the whole
time on its own connection.

The server is ``labscreen serve`` in its own process (frame-rate limit
lifted), so a crash shows as a dead process, and its log is scanned for
tracebacks. At the end the server is stopped with SIGTERM (which commits what
is queued) and the bystander's series is read back from the store file.

Usage::

    .venv/bin/python scripts/fuzz_ingest.py                       # 100,000 frames or 10 minutes
    .venv/bin/python scripts/fuzz_ingest.py --frames 1000000 --seconds 3600
    .venv/bin/python scripts/fuzz_ingest.py --quick                # smoke run

Prints markdown tables on stdout and progress on stderr. Exit status 1 if
anything was wrong: a frame unanswered, an unexpected reply or HTTP status,
the server unhealthy or dead, a traceback in its log, or a bystander point
missing or stored twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

from monitor.store import SQLiteStore  # noqa: E402
from monitor.wire import Error  # noqa: E402
from tests.monitor.harness import WireClient  # noqa: E402
from tests.monitor.test_fuzz import (  # noqa: E402
    FRAMES_PER_EXAMPLE,
    JSON_VALUES,
    PLANS,
    QUERY,
    SEGMENTS,
    Bystander,
    mutate,
    status_of,
)

EXAMPLES_PER_ROUND = 20
"""Hypothesis examples per call of the given-function; limits are checked between calls."""
REST_TAILS = ["", "/scalars", "/scalars/x", "/histograms/h", "/events", "/graph", "/data", "/predictions"]
_READY = re.compile(r"\(port (\d+)\)")


@dataclass
class Tally:
    """Everything counted during a fuzz session."""

    frames: int = 0
    connections: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    http: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def problem(self, kind: str, detail: str) -> None:
        self.problems[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {detail[:300]}")


class Server:
    """``labscreen serve`` on port 0 in a child process, its log in a file."""

    def __init__(self, store: Path, log: Path) -> None:
        self.store = store
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "monitor.cli", "serve", "--port", "0", "--store", str(self.store)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABSCREEN_")}
        env["LABSCREEN_MAX_FRAMES_PER_SECOND"] = "1e9"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*argv, "--log-level", "WARNING"], stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO, env=env
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 90)
        found = _READY.search(self.proc.stdout.readline() if ready else "")
        if found is None:
            self.stop()
            raise SystemExit(f"fuzz_ingest: the server did not start; its log:\n{self.log.read_text()}")
        self.port = int(found.group(1))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit status (None if it had to be killed)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        if proc.stdout is not None:
            proc.stdout.close()
        return code


async def fire(url: str, frames: list[bytes], stream: str, tally: Tally) -> None:
    """Send each frame after a hello on a new connection; record the one reply each must get."""
    client = WireClient(await websocket_connect(url.replace("http", "ws") + "/ws/ingest"))
    tally.connections += 1
    try:
        await client.hello("fuzz", stream=stream)
        for frame in frames:
            await client.send(frame)
            tally.frames += 1
            try:
                reply = await client.receive(timeout=20)
            except (AssertionError, asyncio.TimeoutError) as exc:
                tally.problem("unanswered", f"{type(exc).__name__}: {exc}; frame {frame[:120]!r}")
                return
            tally.replies[reply.kind] += 1
            if isinstance(reply, Error):
                tally.codes[reply.code] += 1
                if not (reply.code and reply.message):
                    tally.problem("error without code or message", repr(reply))
            elif reply.kind not in ("ack", "welcome"):
                tally.problem("unexpected reply", repr(reply))
    finally:
        await client.close()


def fuzz_frames(url: str, tally: Tally, done: Callable[[], bool]) -> None:
    """Hypothesis-planned mutated frames, ``FRAMES_PER_EXAMPLE`` per connection, until ``done()``."""
    streams = iter(range(10**12))

    @settings(max_examples=EXAMPLES_PER_ROUND, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(PLANS)
    def example(plan: list[tuple[int, str, int]]) -> None:
        if done():
            return
        frames = [mutate(kind, how, seed, seq) for seq, (kind, how, seed) in enumerate(plan, start=1)]
        try:
            asyncio.run(fire(url, frames, f"fuzzer-{next(streams)}", tally))
        except Exception as exc:  # a refused connection or hello: recorded, never fatal to the run
            tally.problem("connection failed", f"{type(exc).__name__}: {exc}")

    while not done():
        example()
        print(f"  {tally.frames:,} frames, {tally.connections:,} connections", file=sys.stderr, flush=True)


def fuzz_http(url: str, requests: int, tally: Tally) -> None:
    """Garbage REST reads and HTTP ingest bodies, two requests per example."""
    sent = 0

    @settings(max_examples=EXAMPLES_PER_ROUND, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        path=st.lists(SEGMENTS, min_size=1, max_size=4),
        tail=st.sampled_from(REST_TAILS),
        query=QUERY,
        body=JSON_VALUES | st.binary(max_size=200),
    )
    def example(path: list[str], tail: str, query: dict[str, str], body: Any) -> None:
        nonlocal sent
        if sent >= requests:
            return
        rest = url + "/api/runs/" + "/".join(path) + tail + "?" + urllib.parse.urlencode(query, safe="%")
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        for target, data, allowed in ((rest, None, (200, 400, 404)), (url + "/api/ingest", raw, (200, 400))):
            sent += 1
            try:
                code = status_of(target, data)
            except AssertionError as exc:
                tally.problem("error body without 'error'", f"{target}: {exc}")
                continue
            except (OSError, urllib.error.URLError) as exc:
                tally.problem("request failed", f"{target}: {type(exc).__name__}: {exc}")
                continue
            tally.http[f"{'GET REST' if data is None else 'POST /api/ingest'} {code}"] += 1
            if code not in allowed:
                tally.problem(f"HTTP {code}", target if data is None else repr(data[:200]))

    while sent < requests:
        example()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as reply:
            return int(reply.status) == 200
    except OSError:
        return False


def bystander_check(store_path: Path, sent: int) -> tuple[int, int, int]:
    """Points the bystander had acknowledged, points stored, points missing or duplicated."""
    store = SQLiteStore(store_path)
    try:
        steps = store.scalars("bystander", "x").steps if sent else np.zeros(0, np.int64)
    finally:
        store.close()
    expected = np.arange(sent)
    missing = len(np.setdiff1d(expected, steps))
    duplicated = len(steps) - len(np.unique(steps))
    return sent, len(steps), missing + duplicated


def table(rows: list[tuple[str, object]], head: tuple[str, str]) -> list[str]:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" if isinstance(v, int) else f"| {k} | {v} |" for k, v in rows]
    return lines


def report(args: argparse.Namespace, tally: Tally, seconds: float, checks: dict[str, object]) -> list[str]:
    """The summary as markdown lines."""
    lines = ["## labscreen ingest fuzz", ""]
    lines.append(
        f"{tally.frames:,} frames over {tally.connections:,} connections ({FRAMES_PER_EXAMPLE} per connection) "
        f"in {seconds:.0f} s, one reply awaited per frame ({tally.frames / max(seconds, 1e-9):,.0f} frames/s); "
        f"limits: --frames {args.frames:,}, --seconds {args.seconds:g}; then "
        f"{sum(tally.http.values()):,} HTTP requests."
    )
    lines.append("")
    summary: list[tuple[str, object]] = [("frames sent", tally.frames)]
    summary += [(f"replies: {kind}", n) for kind, n in sorted(tally.replies.items())]
    summary += list(checks.items())
    summary += [(f"PROBLEM: {kind}", n) for kind, n in sorted(tally.problems.items())]
    lines += table(summary, ("", "value"))
    lines += ["", *table(sorted(tally.codes.items(), key=lambda kv: -kv[1]), ("error code", "replies"))]
    lines += ["", *table(sorted(tally.http.items()), ("HTTP request -> status", "count"))]
    lines += [f"\nProblem example: {e}" for e in tally.examples]
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Fuzz a live labscreen server's ingest for longer than the suite.")
    parser.add_argument("--frames", type=int, default=100_000, help="stop after this many frames (default 100000)")
    parser.add_argument("--seconds", type=float, default=600.0, help="or after this many seconds (default 600)")
    parser.add_argument("--http", type=int, default=2_000, help="garbage HTTP requests after the frames (default 2000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 frames, 200 HTTP requests")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.frames, args.http = min(args.frames, 2_000), min(args.http, 200)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="labscreen-fuzz-") as tmp:
        store, log = Path(tmp) / "fuzz.sqlite", Path(tmp) / "server.log"
        server = Server(store, log)
        server.start()
        print(f"server on {server.url} (pid {server.proc.pid if server.proc else 0})", file=sys.stderr)
        bystander = Bystander(server.url)
        bystander.thread.start()
        start = time.monotonic()

        def done() -> bool:
            return tally.frames >= args.frames or time.monotonic() - start >= args.seconds or not server.alive

        seconds = 0.0
        try:
            fuzz_frames(server.url, tally, done)
            seconds = time.monotonic() - start
            fuzz_http(server.url, args.http, tally)
        finally:
            seconds = seconds or time.monotonic() - start
            bystander.stop.set()
            bystander.thread.join(60)
            alive, ok = server.alive, healthy(server.url)
            code = server.stop()
        if bystander.failure is not None:
            tally.problem("bystander failed", repr(bystander.failure))
        sent, stored, wrong = bystander_check(store, bystander.sent)
        text = log.read_text(errors="replace")
    tracebacks = text.count("Traceback")
    checks: dict[str, object] = {
        "server alive at the end": "yes" if alive else "NO",
        "/healthz 200 at the end": "yes" if ok else "NO",
        "server exit status after SIGTERM": code,
        "tracebacks in server log": tracebacks,
        "bystander points acknowledged": sent,
        "bystander points stored": stored,
        "bystander points missing or duplicated": wrong,
    }
    for line in report(args, tally, seconds, checks):
        print(line)
    bad = tally.problems or not (alive and ok) or code != 0 or tracebacks or wrong or stored != sent or not sent
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
