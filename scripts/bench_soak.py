"""Soak: one run of 1,000,000 scalar points and 10,000 histograms with a browser tab open throughout.

``labscreen serve`` runs as its own process on a temporary SQLite store. A
producer thread in this process streams one run through a real ``Monitor``
(10 metrics per ``log()`` call, paced to ``--rate`` points/s; a histogram of
4,096 raw weights every ``points / histograms`` points, alternating between
two layers), while a headless Chromium tab shows the run. Every
``--sample-every`` seconds the script records the server's resident memory
(``VmRSS`` from ``/proc``), the page's JavaScript heap in use after a forced
garbage collection (CDP ``HeapProfiler.collectGarbage`` then
``Performance.getMetrics``), the last step the server has ingested and the
newest step the tab has drawn (a tab that falls behind shows as a growing
gap), the server's CPU use, the page's main-thread busy share (CDP
``TaskDuration``), the machine's load and how often the tab has reloaded
(the page's watchdog, or the server dropping a viewer that does not keep
up). Both memories must level off: every source has a ``rollover``. The
verdict compares each memory's growth over the second half of the points
with its growth over the first half (see ``growth_verdict``). The delivery
report and a count of what the store holds check that nothing was lost.

Then the finished run is opened again, ``--reopens`` times each way: in a
new tab of the browser that showed the soak, and in a new browser context
(nothing cached, as a first visit). That browser has a profile directory,
as a person's browser does (``browser.launch_profile``): its HTTP cache and
V8's cache of compiled scripts work as they would at someone's desk.
Chromium compiles a script into that cache the second time it loads it and
uses the cache from the third, so the first reopen (BokehJS's second load)
compiles it again and the later ones do not. Before, the soak ran in an
incognito-like ``new_context()``, where the compiled scripts were not kept:
every open compiled BokehJS again (0.4-0.6 s to DOMContentLoaded instead of
about 0.2 s). Each open is timed from
``page.goto`` until the Bokeh document is there, until every one of the 10
curves' ColumnDataSources has data, and until two animation frames after
that have passed, i.e. the curves are painted (target: under a second).

Usage::

    .venv/bin/python scripts/bench_soak.py            # full run: about 3-5 minutes (100 s of streaming)
    .venv/bin/python scripts/bench_soak.py --quick    # 100,000 points and 1,000 histograms: about 1.5 minutes

Prints markdown tables on stdout, progress on stderr. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_servers import ServerProcess, labscreen_server
from browser import PAINTED_JS, READY_JS, Tab, cdp_performance, launch, launch_profile, open_dashboard

from producers.client import Monitor
from producers.spool import DeliveryReport

RUN = "soak"
METRICS = (
    "loss", "val_loss", "accuracy", "val_accuracy", "learning_rate", "grad_norm",
    "update_ratio", "throughput", "weight_norm", "top5_accuracy",
)  # fmt: skip
LAYERS = ("dense_1/kernel", "dense_2/kernel")
SOURCES = [f"scalars:{RUN}:{name}" for name in METRICS]
ALL_CURVES_JS = """(names) => {
  if (window.Bokeh === undefined || Bokeh.documents.length === 0) return false;
  const found = new Map();
  for (const root of Bokeh.documents[0].roots())
    for (const model of root.references()) if (names.includes(model.name)) found.set(model.name, model);
  return names.every((n) => found.has(n) && found.get(n).data.step && found.get(n).data.step.length > 0);
}"""
"""True once every named ColumnDataSource is in the page and has at least one point."""
NEWEST_STEP_JS = f"""() => {{ const s = __find('scalars:{RUN}:loss');
  return s && s.data.step.length ? s.data.step[s.data.step.length - 1] : -1 }}"""
MIB = 1024 * 1024
GROWTH_SHARE = 0.25
"""Levelled off: the second half grew by at most this share of the first half's growth..."""
GROWTH_FLOOR_MIB = 2.0
"""...or by at most this many MiB (noise floor)."""
PAINT_TARGET = 1.0
NEW_TAB = "a new tab of the same browser"
NEW_CONTEXT = "a new browser context"


@dataclass
class Progress:
    """What the producer thread has logged so far (read without a lock: each field is current)."""

    points: int = 0
    histograms: int = 0
    step: int = 0
    done: bool = False


@dataclass(frozen=True)
class Sample:
    seconds: float
    points: int
    histograms: int
    server_rss: float
    js_heap: float
    server_step: int
    page_step: int
    server_cpu: float
    page_busy: float
    load: float
    reloads: int


@dataclass(frozen=True)
class Paint:
    """One reopen: seconds from ``goto`` to each stage, and the CPU both sides spent on it."""

    document: float
    data: float
    painted: float
    server_cpu: float
    page_cpu: float


def rss_bytes(pid: int) -> float:
    """Resident set size of process ``pid`` from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024
    return float("nan")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def server_step(url: str) -> int:
    """The run's last step as the server has ingested it (-1 before the first)."""
    try:
        step = get_json(f"{url}/api/runs/{RUN}").get("last_step")
    except (OSError, ValueError):
        return -1
    return -1 if step is None else int(step)


def produce(monitor: Monitor, points: int, histograms: int, rate: float, progress: Progress) -> None:
    """Log ``points`` scalar points (10 per call) and ``histograms`` histograms, paced to ``rate`` points/s."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.05, 4096).astype(np.float32) for _ in LAYERS]
    calls = points // len(METRICS)
    every = max(1, calls // histograms) if histograms > 0 else calls + 1
    start = time.perf_counter()
    for step in range(calls):
        wait = start + step * len(METRICS) / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        decay = 1.0 / (1.0 + step / 5000)
        monitor.log({name: decay * (k + 1) + 0.01 * rng.random() for k, name in enumerate(METRICS)}, step=step)
        progress.points += len(METRICS)
        progress.step = step
        if step % every == 0 and progress.histograms < histograms:
            layer = progress.histograms % len(LAYERS)
            monitor.histogram(LAYERS[layer], weights[layer] * (1 + step / calls), step=step)
            progress.histograms += 1
    progress.done = True


class Sampler:
    """Takes a ``Sample`` of the server and the tab; CPU shares are over the time since the previous one."""

    def __init__(self, server: ServerProcess, url: str, tab: Tab, progress: Progress) -> None:
        self.server, self.url, self.tab, self.progress = server, url, tab, progress
        self.cdp = cdp_performance(tab.page)
        self.started = time.monotonic()
        self._last: tuple[float, float, float] | None = None

    def _task_seconds(self) -> float:
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return float(metrics["TaskDuration"])

    def take(self) -> Sample:
        now, cpu = time.monotonic(), self.server.cpu_seconds()
        task = self._task_seconds()  # before the forced GC, which would count as page work
        self.cdp.send("HeapProfiler.collectGarbage")
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        try:
            page_step = int(self.tab.page.evaluate(NEWEST_STEP_JS))
        except Exception:  # the page is reloading
            page_step = -1
        last, self._last = self._last, (now, cpu, task)
        then, then_cpu, then_task = last if last is not None else (now, math.nan, math.nan)
        span = max(now - then, 1e-9)
        return Sample(
            seconds=now - self.started,
            points=self.progress.points,
            histograms=self.progress.histograms,
            server_rss=rss_bytes(self.server.pid),
            js_heap=float(metrics["JSHeapUsedSize"]),
            server_step=server_step(self.url),
            page_step=page_step,
            server_cpu=(cpu - then_cpu) / span,
            page_busy=(task - then_task if not task < then_task else task) / span,  # a reload restarts the count
            load=os.getloadavg()[0],
            reloads=self.tab.reloads,
        )


def soak(profile: Any, server: ServerProcess, args: argparse.Namespace) -> tuple[list[Sample], DeliveryReport, Tab]:
    """Stream the run with a tab of ``profile`` open; sample every ``args.sample_every`` seconds until it caught up.

    Returns the samples, the delivery report and the tab, still open.
    """
    url = f"http://127.0.0.1:{server.port}"
    monitor = Monitor(url=url, run=RUN, name="soak", config={"total_steps": args.points // len(METRICS)})
    monitor.log(dict.fromkeys(METRICS, 1.0), step=0)
    tab = open_dashboard(None, f"{url}/?run={RUN}", context=profile)
    tab.page.wait_for_function(ALL_CURVES_JS, arg=SOURCES, timeout=60_000)
    progress = Progress()
    sampler = Sampler(server, url, tab, progress)
    producer = threading.Thread(
        target=produce, args=(monitor, args.points, args.histograms, args.rate, progress), daemon=True
    )
    samples = [sampler.take()]
    print_sample(samples[-1], sys.stderr)
    producer.start()
    last_step = args.points // len(METRICS) - 1
    report: DeliveryReport | None = None
    deadline = None
    while deadline is None or time.monotonic() < deadline:
        tab.page.wait_for_timeout(args.sample_every * 1000)
        samples.append(sampler.take())
        print_sample(samples[-1], sys.stderr)
        if progress.done and report is None:
            report = monitor.finish(timeout=120)
            deadline = time.monotonic() + args.drain
            print(f"producer done: {report}", file=sys.stderr, flush=True)
        if report is not None and samples[-1].page_step >= last_step:
            break
    producer.join()
    assert report is not None
    return samples, report, tab


def stored(url: str) -> tuple[int, int]:
    """Scalar points and histograms of the run in the store."""
    points = sum(len(get_json(f"{url}/api/runs/{RUN}/scalars/{name}")["steps"]) for name in METRICS)
    histograms = 0
    for layer in LAYERS:
        query = urllib.parse.urlencode({"limit": 100_000})
        found = get_json(f"{url}/api/runs/{RUN}/histograms/{urllib.parse.quote(layer, safe='')}?{query}")
        histograms += len(found["histograms"])
    return points, histograms


def time_to_paint(browser: Any, server: ServerProcess, context: Any = None) -> Paint:
    """Seconds from ``goto`` to the Bokeh document, to every curve having data, to two frames later.

    The page opens in ``context`` (a new tab of that browser context) or, if
    None, in a new context of its own. Also the server's CPU seconds over
    that time and the page's main-thread task seconds (CDP
    ``TaskDuration``): what the open costs on an idle machine at the least,
    since the two mostly run one after the other.
    """
    own = context is None
    if own:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    cdp = cdp_performance(page)
    try:
        cpu = server.cpu_seconds()
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{server.port}/?run={RUN}", wait_until="commit")
        page.wait_for_function(READY_JS, timeout=60_000, polling="raf")
        document = time.perf_counter() - start
        page.wait_for_function(ALL_CURVES_JS, arg=SOURCES, timeout=60_000, polling="raf")
        data = time.perf_counter() - start
        page.evaluate(PAINTED_JS)
        painted = time.perf_counter() - start
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return Paint(document, data, painted, server.cpu_seconds() - cpu, float(metrics["TaskDuration"]))
    finally:
        if own:
            context.close()
        else:
            page.close()


def share(value: float) -> str:
    """A CPU share as a percentage; a dash when there is none (the first sample)."""
    return "-" if math.isnan(value) else f"{value:.0%}"


def print_sample(s: Sample, stream: Any = sys.stdout) -> None:
    print(
        f"| {s.seconds:,.0f} | {s.points:,} | {s.histograms:,} | {s.server_rss / MIB:,.1f} | {s.js_heap / MIB:,.1f} "
        f"| {s.server_step:,} | {s.page_step:,} | {share(s.server_cpu)} | {share(s.page_busy)} | {s.load:.1f} "
        f"| {s.reloads} |",
        file=stream,
        flush=True,
    )


def growth_verdict(label: str, samples: list[Sample], value: str, total: int) -> tuple[bool, str]:
    """Growth of ``value`` over the first and the second half of the points sent, and whether it levelled off.

    Levels: at the start, the first sample; at mid-run, the median of the
    three samples nearest to half the points sent; at the end, the median of
    the last three samples (the stream done and the tab caught up, or the
    drain timed out). Medians, because a page reload or a new session moves
    a single sample by several MiB. Levelled off: the second half grew by at
    most ``GROWTH_SHARE`` of the first half's growth, or by at most
    ``GROWTH_FLOOR_MIB``.
    """
    if len(samples) < 5:
        return False, f"{label}: too few samples ({len(samples)}) to judge"
    nearest = sorted(samples[1:-3], key=lambda s: abs(s.points - total / 2))[:3]
    start = getattr(samples[0], value) / MIB
    mid = statistics.median(getattr(s, value) for s in nearest) / MIB
    end = statistics.median(getattr(s, value) for s in samples[-3:]) / MIB
    limit = max(GROWTH_SHARE * (mid - start), GROWTH_FLOOR_MIB)
    ok = end - mid <= limit
    text = (
        f"{label} {start:.1f} -> {mid:.1f} -> {end:.1f} MiB: first half {mid - start:+.1f} MiB, "
        f"second half {end - mid:+.1f} MiB (limit {limit:.1f}): {'levels off' if ok else 'STILL GROWING'}"
    )
    return ok, text


def print_report(
    samples: list[Sample],
    report: DeliveryReport,
    kept: tuple[int, int],
    reopens: dict[str, list[Paint]],
    args: argparse.Namespace,
) -> None:
    print(f"### Soak: {args.points:,} scalar points and {args.histograms:,} histograms at {args.rate:,.0f} points/s")
    print()
    print("| t (s) | points sent | histograms sent | server RSS MiB | page JS heap MiB (after GC) "
          "| step ingested | step drawn in the tab | server CPU | page main thread busy | load (1 min) "
          "| tab reloads |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in samples:
        print_sample(s)
    print()
    print(
        f"delivery: {report.frames:,} frames, {report.acked:,} acked, {report.refused} refused, "
        f"{report.dropped} dropped, {report.undelivered} undelivered, {report.discarded} calls discarded; "
        f"in the store: {kept[0]:,} of {args.points:,} points, {kept[1]:,} of {args.histograms:,} histograms"
    )
    last_step = args.points // len(METRICS) - 1
    caught_up = samples[-1].page_step >= last_step
    print(
        f"tab: newest drawn step {samples[-1].page_step:,} of {last_step:,} at the end "
        f"({'caught up' if caught_up else 'DID NOT CATCH UP'}), {samples[-1].reloads} reloads"
    )
    rss_ok, rss_text = growth_verdict("server RSS", samples, "server_rss", args.points)
    live = [s for s in samples if s.page_step >= 0]  # a tab in the middle of a reload has an empty heap
    heap_ok, heap_text = growth_verdict("page JS heap (samples of a loaded page)", live, "js_heap", args.points)
    print(f"- {rss_text}")
    print(f"- {heap_text}")
    print()
    print("### Opening the finished run again")
    print()
    print("| opened in | attempt | document (s) | all 10 curves have data (s) | painted (s) | server CPU (s) "
          "| page main thread (s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    medians: dict[str, float] = {}
    fields = ("document", "data", "painted", "server_cpu", "page_cpu")
    for where, paints in reopens.items():
        for index, p in enumerate(paints, 1):
            print(
                f"| {where} | {index} | {p.document:.2f} | {p.data:.2f} | {p.painted:.2f} | {p.server_cpu:.2f} "
                f"| {p.page_cpu:.2f} |"
            )
        columns = [statistics.median(getattr(p, field) for p in paints) for field in fields]
        print(f"| {where} | median | {' | '.join(f'{c:.2f}' for c in columns)} |")
        medians[where] = columns[2]
    print()
    painted = "; ".join(
        f"{where}: {median:.2f} s ({'met' if median < PAINT_TARGET else 'MISSED'})" for where, median in medians.items()
    )
    print(
        f"verdict: memory {'bounded' if rss_ok and heap_ok else 'NOT bounded'} "
        f"(server RSS {'levels off' if rss_ok else 'grows'}, JS heap {'levels off' if heap_ok else 'grows'}); "
        f"reopen paints, median, target < {PAINT_TARGET:.0f} s: {painted}; "
        f"tab {'caught up by the end' if caught_up else 'did not catch up'}, reloaded {samples[-1].reloads} times"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 points and 1,000 histograms, sampled every 3 s")
    parser.add_argument("--points", type=int, default=1_000_000, help="scalar points to stream")
    parser.add_argument("--histograms", type=int, default=10_000, help="histograms to stream")
    parser.add_argument("--rate", type=float, default=10_000.0, help="scalar points per second")
    parser.add_argument("--sample-every", type=float, default=8.0, help="seconds between samples")
    parser.add_argument("--drain", type=float, default=120.0, help="most seconds to wait for the tab to catch up")
    parser.add_argument("--reopens", type=int, default=3, help="times the finished run is opened again, each way")
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.histograms, args.sample_every, args.drain = 100_000, 1_000, 3.0, 60.0
    from playwright.sync_api import sync_playwright

    load, when = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M")
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at start; {when}")
    print()
    with tempfile.TemporaryDirectory(prefix="labscreen-soak-") as tmp:
        server = labscreen_server(Path(tmp) / "soak.sqlite", lifted=False).start()
        url = f"http://127.0.0.1:{server.port}"
        try:
            with sync_playwright() as playwright:
                profile = launch_profile(playwright, str(Path(tmp) / "profile"))
                browser = launch(playwright)
                try:
                    samples, report, tab = soak(profile, server, args)
                    kept = stored(url)
                    tab.page.close()  # what the browser keeps stays with its profile
                    reopens: dict[str, list[Paint]] = {NEW_TAB: [], NEW_CONTEXT: []}
                    for attempt in range(args.reopens):
                        for where, paints in reopens.items():
                            paints.append(time_to_paint(browser, server, profile if where == NEW_TAB else None))
                            print(f"reopen {attempt + 1}, {where}: {paints[-1]}", file=sys.stderr, flush=True)
                finally:
                    profile.close()
                    browser.close()
        finally:
            server.stop()
    print_report(samples, report, kept, reopens, args)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
