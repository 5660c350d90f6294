"""Benchmark: latency from ``Monitor.log()`` to the browser's ColumnDataSource, TensorBoard beside it, and fan-out.

``labscreen serve`` runs as its own process on a temporary SQLite store; this process is the producer (a real
``Monitor``, default settings unless ``--flush-interval`` says otherwise). Each update is a ``log()`` call
carrying ``latency_probe = time.time()`` taken just before the call.

Latency, browser: a headless Chromium tab shows the run. A BokehJS document listener (an init script, so it
survives a reload) stamps ``performance.timeOrigin + performance.now()`` when each ``ColumnsStreamed`` event for
``scalars:<run>:latency_probe`` is applied to the ColumnDataSource (before it is painted) and reports the probe
values it carried through ``console.debug``. Streaming starts once the tab shows the run and its main thread
has gone idle (``requestIdleCallback``, at most 10 s): building the charts' views is the cost of opening a run
(``bench_soak.py`` times it), not of streaming. Latency is that stamp minus the probe value, less the page's clock
offset (page clock minus ``time.time()``, from the fastest of 15 ``page.evaluate`` round trips, taken before and
after the run and averaged). A probe counts once, at its first arrival; one not received within 120 s of the
last ``log()`` counts as infinitely late ("not received"). Two rates: 10 updates/s of one point, and 1,000
points/s as 100 ``log()`` calls/s of 10 metrics (the probe and ``metric_0`` .. ``metric_8``: 10 charts). The
note gives the page's main-thread time (CDP ``Performance.getMetrics``; wall time of its tasks, so it includes
time the renderer waited for a CPU) as a share of the wall time, and the median latency of the first and last
10% of the probes: a page that cannot keep up falls further behind as the run goes on.

Latency, Python viewer: the same two rates to one viewer (see fan-out), which leaves out the browser's work.

TensorBoard: the same two rates, each a ``tf.summary.scalar`` per metric + ``flush()`` per update, into a log
directory that ``tensorboard --logdir`` serves with its defaults (5 s reload interval; 1,000 scalar samples kept
per tag, so at most 900 updates are written per rate: beyond that TensorBoard drops samples by design); a
poller GETs ``/data/plugin/scalars/scalars?run=..&tag=..`` every 20 ms and stamps when each step first shows.

Fan-out: 1, 10 and 50 viewers at 10 updates/s, each count on a fresh server. A viewer is a ``bokeh.client``
session (the same protocol and server-side work as a browser tab, without a renderer: 50 Chromium tabs do not fit
on a small machine) on its own IOLoop and thread in this process. It reads every PATCH-DOC message and decodes
the probe column of ``ColumnsStreamed`` events for the probe source, but applies no patch once that source is in
its document: ``bokeh.client`` rebuilds a lookup of every model (hundreds here) for each patch, up to a millisecond,
and 50 viewers in one process would measure themselves. The table gives the probe points each viewer received,
their latency as this process saw them, the server's CPU (``/proc/PID/stat``) idle with the viewers open and
while streaming, and this process's CPU while streaming (viewers, producer, bookkeeping).

Usage::

    .venv/bin/python scripts/bench_latency.py            # full run, 12-13 minutes on 2 cores
    .venv/bin/python scripts/bench_latency.py --quick    # smoke run, numbers not meaningful

Prints markdown tables on stdout, progress on stderr. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from bench_servers import REPO, ServerProcess, labscreen_server
from browser import cdp_performance, clock_offset_ms, launch, main_thread_seconds, open_dashboard
from tornado.ioloop import IOLoop

import monitor.dashboard.pacing  # noqa: F401  (registers the Flow model, so bokeh.client can read the page)
from producers.client import Monitor

PROBE = "latency_probe"
FILLERS = tuple(f"metric_{i}" for i in range(9))
LISTEN_JS = """(() => {
  const name = %s;
  const attach = () => {
    if (window.Bokeh === undefined || Bokeh.documents.length === 0) { setTimeout(attach, 10); return; }
    Bokeh.documents[0].on_change((ev) => {
      if (ev.kind !== 'ColumnsStreamed' || ev.model.name !== name) return;
      const now = performance.timeOrigin + performance.now();
      console.debug('__arrival ' + JSON.stringify(Array.from(ev.data.value, (sent) => [sent * 1000, now])));
    });
  };
  attach();
})();"""
"""An init script: logs ``[sent_ms, arrival_ms]`` for each probe point streamed into source ``%s``, also after a
reload (the dashboard's watchdog, or the server dropping a viewer that fell behind, reloads the page)."""
CHARTS_JS = """() => Bokeh.documents[0].roots().flatMap((root) => Array.from(root.references()))
  .filter((model) => (model.name || '').startsWith('chart:')).length"""
ARRIVAL_WAIT_SECONDS = 120.0
TB_POLL_SECONDS = 0.02
FANOUT_SESSIONS = (1, 10, 50)


@dataclass(frozen=True)
class Rate:
    """One producer load: ``calls_per_second`` ``log()`` calls of ``points_per_call`` metrics."""

    label: str
    calls_per_second: float
    points_per_call: int
    updates: int
    target: str


@dataclass
class Result:
    """Latencies of one case, in milliseconds, of ``sent`` probes (the missing ones were not received)."""

    label: str
    sent: int
    latencies_ms: list[float] = field(default_factory=list)
    target: str = ""
    note: str = ""

    def row(self) -> str:
        missing = [np.inf] * max(0, self.sent - len(self.latencies_ms))
        every = np.array(self.latencies_ms + missing)
        cells = [_ms(float(np.percentile(every, q, method="inverted_cdf"))) for q in (50, 90, 99)] if len(every) else []
        cells.append(_ms(float(every.max())) if len(every) else "-")
        return (
            f"| {self.label} | {self.sent:,} | {len(self.latencies_ms):,} | {' | '.join(cells)} "
            f"| {self.target} | {self.note} |"
        )


def _ms(value: float) -> str:
    return "not received" if np.isinf(value) else f"{value:,.1f}"


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def paced(count: int, per_second: float) -> Iterator[int]:
    """Yield 0..count-1 on an absolute schedule of ``per_second`` (late ticks catch up, none are skipped)."""
    start = time.perf_counter()
    for i in range(count):
        wait = start + i / per_second - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield i


def probe_metrics(points: int, step: int) -> dict[str, float]:
    """The metrics of one update: the probe stamp plus ``points - 1`` fillers."""
    metrics = {PROBE: time.time()}
    metrics.update({name: step * 0.001 + k for k, name in enumerate(FILLERS[: points - 1])})
    return metrics


def drift_note(latencies: list[float]) -> str:
    """Median latency of the first and of the last tenth of the probes (in the order they were sent)."""
    tenth = len(latencies) // 10
    if tenth == 0:
        return ""
    first, last = np.median(latencies[:tenth]), np.median(latencies[-tenth:])
    return f"p50 of first / last 10%: {first:,.0f} / {last:,.0f} ms"


SETTLED_JS = "() => new Promise((resolve) => requestIdleCallback(() => resolve(true), {timeout: 10000}))"
"""Resolves once the page's main thread has had idle time (its first build and paint are done), or after 10 s."""


def browser_case(browser: Any, url: str, rate: Rate, flush_interval: float, run: str) -> Result:
    """Stream ``rate`` to a fresh run and time each probe into a fresh Chromium tab."""
    source = f"scalars:{run}:{PROBE}"
    monitor = Monitor(url=url, run=run, name=run, flush_interval=flush_interval)
    tab = None
    arrivals: dict[float, float] = {}
    try:
        monitor.log(probe_metrics(rate.points_per_call, 0), step=0)
        tab = open_dashboard(browser, f"{url}/?run={run}", init_scripts=[LISTEN_JS % json.dumps(source)])
        tab.page.wait_for_function("(n) => __find(n) !== null", arg=source, timeout=30_000)
        tab.page.evaluate(SETTLED_JS)
        offset_before, uncertainty = clock_offset_ms(tab.page)
        cdp = cdp_performance(tab.page)
        busy_before, wall_before = main_thread_seconds(cdp), time.monotonic()
        tab.page.on("console", partial(_note_arrival, arrivals))
        started_ms = time.time() * 1000.0
        for i in paced(rate.updates, rate.calls_per_second):
            monitor.log(probe_metrics(rate.points_per_call, i + 1), step=i + 1)
        deadline = time.monotonic() + ARRIVAL_WAIT_SECONDS
        while sum(s >= started_ms for s in arrivals) < rate.updates and time.monotonic() < deadline:
            tab.page.wait_for_timeout(250)  # playwright delivers console events while we wait
        busy = main_thread_seconds(cdp)
        wall = time.monotonic() - wall_before
        charts = int(tab.page.evaluate(CHARTS_JS))
        offset_after, _ = clock_offset_ms(tab.page)
    finally:
        monitor.finish(timeout=10)
        if tab is not None:
            tab.close()
    assert tab is not None
    offset = (offset_before + offset_after) / 2
    progress(f"page clock offset {offset_before:+.2f} ms before, {offset_after:+.2f} after (+/- {uncertainty:.2f})")
    latencies = [arrivals[sent] - offset - sent for sent in sorted(arrivals) if sent >= started_ms]
    shares = ", ".join(f"{k} {100 * (busy[k] - busy_before[k]) / wall:.0f}%" for k in ("script", "layout", "style"))
    notes = [f"charts: {charts}", f"page main thread busy {100 * (busy['task'] - busy_before['task']) / wall:.0f}%"]
    notes += [f"({shares})", drift_note(latencies)]
    if abs(offset_after - offset_before) > 1.0:
        notes.append(f"page clock drifted {offset_after - offset_before:+.1f} ms")
    if tab.reloads:
        notes.append(f"the page reloaded {tab.reloads}x")
    label = f"labscreen to a Chromium tab, {rate.label}"
    return Result(label, rate.updates, latencies, rate.target, "; ".join(n for n in notes if n))


def _note_arrival(arrivals: dict[float, float], message: Any) -> None:
    if message.text.startswith("__arrival "):
        for sent, arrived in json.loads(message.text.removeprefix("__arrival ")):
            arrivals.setdefault(sent, arrived)  # a reloaded page may get a probe again: its first arrival counts


TB_MAX_UPDATES = 900
"""Updates written to TensorBoard per rate: under the 1,000 samples per tag it keeps by default."""


def tensorboard_scalars(port: int, tag: str) -> list[list[float]]:
    """``[wall_time, step, value]`` rows of run ``bench``, or [] while TensorBoard has not loaded the tag."""
    query = urllib.parse.urlencode({"run": "bench", "tag": tag})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}", timeout=5) as r:
            rows = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return []
    return rows if isinstance(rows, list) else []


def _poll_first_seen(port: int, seen: dict[int, float], stop: threading.Event) -> None:
    while not stop.is_set():
        rows = tensorboard_scalars(port, PROBE)
        now = time.time()
        for row in rows:
            seen.setdefault(int(row[1]), now)
        stop.wait(TB_POLL_SECONDS)


def tensorboard_case(tmp: Path, rate: Rate) -> Result:
    """Time ``tf.summary.scalar`` (the probe and the rate's fillers) + ``flush()`` until TensorBoard lists the step."""
    import tensorflow as tf

    logdir = tmp / f"tb-{rate.calls_per_second:g}x{rate.points_per_call}"
    writer = tf.summary.create_file_writer(str(logdir / "bench"))
    updates = min(rate.updates, TB_MAX_UPDATES)

    def write(step: int) -> float:
        metrics = probe_metrics(rate.points_per_call, step)
        with writer.as_default():
            for name, value in metrics.items():
                tf.summary.scalar(name, value, step=step)
        writer.flush()
        return metrics[PROBE]

    write(0)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = int(free.getsockname()[1])
    argv = [str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(logdir), "--port", str(port)]
    with (tmp / "tensorboard.log").open("wb") as log:
        board = subprocess.Popen([*argv, "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    seen: dict[int, float] = {}
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 120
        while not tensorboard_scalars(port, PROBE) and time.monotonic() < deadline:
            time.sleep(0.1)
        threading.Thread(target=_poll_first_seen, args=(port, seen, stop), daemon=True).start()
        sent = {i + 1: write(i + 1) for i in paced(updates, rate.calls_per_second)}
        deadline = time.monotonic() + 30
        while len(seen) < updates + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        board.terminate()
        try:
            board.wait(timeout=20)
        except subprocess.TimeoutExpired:
            board.kill()
            board.wait()
        writer.close()
    latencies = [(seen[step] - at) * 1000.0 for step, at in sent.items() if step in seen]
    label = f"TensorBoard: tf.summary.scalar + flush, {rate.label}, polled every 20 ms"
    return Result(label, updates, latencies, "", drift_note(latencies))


class ViewerPool:
    """``count`` ``bokeh.client`` sessions of the dashboard, each on its own IOLoop and thread.

    Each records the latency (arrival in this process minus the probe) of every probe point sent at or after
    ``since`` (a ``time.time()``) that is streamed into ``scalars:<run>:latency_probe``.
    """

    def __init__(self, url: str, run: str, count: int) -> None:
        self.url, self.run, self.count = url, run, count
        self.source = f"scalars:{run}:{PROBE}"
        self.since = np.inf
        self.latencies_ms: list[list[float]] = [[] for _ in range(count)]
        self._sessions: list[tuple[IOLoop, Any]] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> ViewerPool:
        """Open the sessions one after another (``RuntimeError`` if one does not open within 60 s)."""
        for index in range(self.count):
            opened: Future[None] = Future()
            thread = threading.Thread(target=self._serve, args=(index, opened), name=f"viewer-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
            try:
                opened.result(timeout=60)
            except Exception as exc:
                raise RuntimeError(f"could not open viewer session {index + 1} of {self.count}") from exc
        return self

    def _serve(self, index: int, opened: Future[None]) -> None:
        from bokeh.client import pull_session

        loop = IOLoop()
        try:
            session = pull_session(url=f"{self.url}/", io_loop=loop, arguments={"run": self.run})
        except Exception as exc:
            opened.set_exception(exc)
            return
        self._sessions.append((loop, session))
        opened.set_result(None)
        loop.run_sync(partial(self._read_until_closed, session, self.latencies_ms[index]))

    async def _read_until_closed(self, session: Any, received: list[float]) -> None:
        """Read PATCH-DOC messages until the connection closes; apply them only until the probe source exists.

        ``bokeh.client``'s own reader (``_loop_until_closed``, private, "for testing") recurses once per message
        and ends in ``RecursionError`` after about 330; this flat loop pops messages the same way.
        """
        connection = session._connection
        source = session.document.get_model_by_name(self.source)
        while (message := await connection._pop_message()) is not None:
            if message.msgtype != "PATCH-DOC":
                continue
            if source is None:
                session._handle_patch(message)
                source = session.document.get_model_by_name(self.source)
                continue
            now = time.time()
            sent = _streamed_column(message, source.id, "value")
            received.extend((now - s) * 1000.0 for s in sent if s >= self.since)

    def received(self) -> list[int]:
        """Probe points each session has received so far."""
        return [len(latencies) for latencies in self.latencies_ms]

    def stop(self) -> None:
        """Close every session and join its thread."""
        for loop, session in self._sessions:
            loop.add_callback(session.close)
        for thread in self._threads:
            thread.join(10)


def _inline_bytes(text: str) -> bytes:
    """An array's bytes written into the message as base64 (Bokeh gzips them first)."""
    data = base64.b64decode(text)
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _streamed_column(message: Any, model_id: str, column: str) -> list[float]:
    """The values of ``column`` in the message's ``ColumnsStreamed`` events for model ``model_id``."""
    buffers = {buffer.id: buffer.data for buffer in message.buffers}
    values: list[float] = []
    for event in message.content.get("events", []):
        if event.get("kind") != "ColumnsStreamed" or event["model"]["id"] != model_id:
            continue
        data = event["data"]
        rep = dict(data["entries"])[column] if data.get("type") == "map" else data[column]
        if isinstance(rep, dict) and rep.get("type") == "ndarray":
            payload = rep["array"]["data"]
            raw = buffers[payload["id"]] if isinstance(payload, dict) else _inline_bytes(payload)
            values.extend(np.frombuffer(raw, dtype=np.dtype(rep["dtype"]).newbyteorder("<")).tolist())
        else:
            values.extend(float(v) for v in rep)
    return values


def client_case(url: str, rate: Rate, flush_interval: float, run: str) -> Result:
    """``browser_case`` with one Python viewer session instead of a Chromium tab (no rendering)."""
    monitor = Monitor(url=url, run=run, name=run, flush_interval=flush_interval)
    pool = ViewerPool(url, run, 1)
    try:
        monitor.log(probe_metrics(rate.points_per_call, 0), step=0)
        pool.start()
        time.sleep(1.0)  # let the session's history load land before the live points
        pool.since = time.time()
        for i in paced(rate.updates, rate.calls_per_second):
            monitor.log(probe_metrics(rate.points_per_call, i + 1), step=i + 1)
        _wait_received(pool, rate.updates, ARRIVAL_WAIT_SECONDS)
    finally:
        pool.stop()
        monitor.finish(timeout=10)
    label = f"labscreen to a Python viewer session (no rendering), {rate.label}"
    return Result(label, rate.updates, pool.latencies_ms[0], note=drift_note(pool.latencies_ms[0]))


def _wait_received(pool: ViewerPool, updates: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while min(pool.received()) < updates and time.monotonic() < deadline:
        time.sleep(0.05)


def fanout_case(tmp: Path, sessions: int, seconds: float, settle: float) -> str:
    """One fresh server, ``sessions`` viewers, 10 updates/s for ``seconds``: a table row."""
    server = labscreen_server(tmp / f"fanout-{sessions}.sqlite", lifted=False).start()
    url = f"http://127.0.0.1:{server.port}"
    run = f"fanout-{sessions}"
    monitor = Monitor(url=url, run=run, name=run)
    pool = ViewerPool(url, run, sessions)
    try:
        monitor.log({PROBE: time.time()}, step=0)
        pool.start()
        idle = _cpu_percent(server, settle)
        updates = round(seconds * 10)
        cpu_start, own_start, wall_start = server.cpu_seconds(), time.process_time(), time.monotonic()
        pool.since = time.time()
        for i in paced(updates, 10.0):
            monitor.log({PROBE: time.time()}, step=i + 1)
        _wait_received(pool, updates, 30.0)
        wall = time.monotonic() - wall_start
        busy = 100.0 * (server.cpu_seconds() - cpu_start) / wall
        own = 100.0 * (time.process_time() - own_start) / wall
    finally:
        pool.stop()
        monitor.finish(timeout=10)
        server.stop()
    counts = sorted(pool.received())
    every = np.array([x for lat in pool.latencies_ms for x in lat] or [np.nan])
    p50, p99 = np.percentile(every, 50), np.percentile(every, 99)
    return (
        f"| {sessions} | {updates:,} | {counts[0]:,} / {counts[len(counts) // 2]:,} / {counts[-1]:,} "
        f"| {p50:,.1f} / {p99:,.1f} | {idle:.1f} | {busy:.1f} | {own:.1f} |"
    )


def _cpu_percent(server: ServerProcess, seconds: float) -> float:
    cpu, wall = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (server.cpu_seconds() - cpu) / (time.monotonic() - wall)


def rates(quick: bool) -> list[Rate]:
    scale = 10 if quick else 1
    return [
        Rate("10 updates/s (1 point per log call)", 10, 1, 600 // scale, "p50 <= 10, p99 <= 30"),
        Rate("1,000 points/s (100 log calls/s x 10 points)", 100, 10, 3000 // scale, "p50 <= 30, p99 <= 100"),
    ]


def print_latency(results: list[Result], flush_interval: float) -> None:
    print(f"### Latency: Monitor.log() to the browser's ColumnDataSource (Monitor flush_interval={flush_interval})")
    print()
    print("| case | probes sent | received | p50 ms | p90 ms | p99 ms | max ms | target ms | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for result in results:
        print(result.row())
    print()


def print_fanout(rows: list[str]) -> None:
    print("### Fan-out: viewer sessions at 10 updates/s (Python bokeh.client viewers, not Chromium tabs)")
    print()
    print(
        "| sessions | updates sent | received per session (min / median / max) | viewer latency p50 / p99 ms "
        "| server CPU idle, % of a core | server CPU streaming, % of a core | viewers' process CPU streaming, % |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run; numbers not meaningful")
    parser.add_argument("--flush-interval", type=float, default=0.05, help="Monitor flush_interval (its default 0.05)")
    parser.add_argument("--skip", action="append", default=[], choices=("browser", "tensorboard", "fanout"))
    args = parser.parse_args(argv)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} at start; {time.strftime('%Y-%m-%d %H:%M')}")
    print()
    with tempfile.TemporaryDirectory(prefix="labscreen-bench-") as name:
        tmp = Path(name)
        results: list[Result] = []
        if "browser" not in args.skip:
            results += run_browser_cases(tmp, rates(args.quick), args.flush_interval)
        if "tensorboard" not in args.skip:
            for rate in rates(args.quick):
                progress(f"TensorBoard, {rate.label}")
                results.append(tensorboard_case(tmp, rate))
        if results:
            print_latency(results, args.flush_interval)
        if "fanout" not in args.skip:
            seconds, settle = (5.0, 2.0) if args.quick else (30.0, 5.0)
            rows = []
            for sessions in (1, 5) if args.quick else FANOUT_SESSIONS:
                progress(f"fan-out: {sessions} sessions")
                rows.append(fanout_case(tmp, sessions, seconds, settle))
            print_fanout(rows)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    return 0


def run_browser_cases(tmp: Path, cases: list[Rate], flush_interval: float) -> list[Result]:
    from playwright.sync_api import sync_playwright

    server = labscreen_server(tmp / "latency.sqlite", lifted=False).start()
    url = f"http://127.0.0.1:{server.port}"
    results = []
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                for index, rate in enumerate(cases):
                    progress(rate.label)
                    results.append(browser_case(browser, url, rate, flush_interval, f"latency-{index}"))
            finally:
                browser.close()
        for index, rate in enumerate(cases):
            progress(f"{rate.label}, Python viewer")
            results.append(client_case(url, rate, flush_interval, f"latency-client-{index}"))
    finally:
        server.stop()
    return results


if __name__ == "__main__":
    raise SystemExit(main())
