"""Follow: a kiosk tab following one run after another, its memory beside BokehJS's own.

A lab screen in kiosk mode (``/?kiosk=1``) switches to each new run by
itself, and every switch replaces the charts. This script starts
``labscreen serve`` on a temporary SQLite store and a headless Chromium kiosk
tab, then starts ``--runs`` runs one after another through real ``Monitor``
producers. Each run logs 100 steps of 5 metrics (one metric name changes
from run to run) and 6 weight histograms, and finishes once the tab shows
it. After every ``--sample-every`` runs it records the page's JS heap in use
after a forced garbage collection, its DOM nodes (CDP
``HeapProfiler.collectGarbage`` then ``Performance.getMetrics``), the
models BokehJS holds for the document, and the server's RSS (of the
dashboard as shipped).

The same is done twice, each on its own server: the dashboard as shipped,
and the same page without ``static/leak_fix.js`` (the script's block is cut
out of the served HTML), which is BokehJS 3.9's own behaviour: the baseline.
Models the document no longer reaches are dropped by BokehJS within 30 s
(with the fix), so the heap saw-tooths. Each sample therefore also forces
that drop and reads the heap again ("held"): what the page keeps for good.
The verdict: bounded if the held heap grew by at most ``BOUND_MIB`` from
half-way to the end.

Usage::

    .venv/bin/python scripts/bench_follow.py               # 40 runs each: about 4 minutes
    .venv/bin/python scripts/bench_follow.py --runs 10     # quicker

Prints a markdown table on stdout, progress on stderr. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_servers import ServerProcess, labscreen_server
from bench_soak import rss_bytes
from browser import CHROMIUM, CHROMIUM_ARGS, FIND_JS, READY_JS, cdp_performance

from producers.client import Monitor

MIB = 1024 * 1024
BROWSER_ARGS = [*CHROMIUM_ARGS, "--disable-features=LocalNetworkAccessChecks"]
"""Chromium treats a page the script serves itself (the baseline's) as public, and would block its
websocket to 127.0.0.1; both variants run with the check off, so they differ only in the script."""
SHOWS_JS = "(name) => { const m = window.__find('header-run'); return m !== null && m.text.includes(name) }"
DRAWN_JS = "(name) => { const s = window.__find(`scalars:${name}:loss`); return s && s.data.step.length >= 100 }"
MODELS_JS = "() => Bokeh.documents[0]._all_models.size"
RECOMPUTE_JS = "() => Bokeh.documents[0]._recompute_all_models()"
BOUND_MIB = 2.0
"""The verdict's allowance: held heap may differ this much from half-way to the end."""
LEAK_FIX = re.compile(r"<script>\s*// [A-Z][a-z]+ changes so that BokehJS 3\.9 lets go.*?</script>", re.S)


@dataclass(frozen=True)
class Sample:
    runs: int
    heap: float
    held: float
    nodes: int
    models: int
    server_rss: float


def without_leak_fix(route: Any) -> None:
    """Serve the dashboard page with the ``leak_fix.js`` block cut out (the baseline)."""
    response = route.fetch()
    page, cut = LEAK_FIX.subn("", response.text())
    if cut != 1:
        raise RuntimeError(f"expected one leak_fix.js block in the page, found {cut}")
    route.fulfill(response=response, body=page)


def start_run(url: str, index: int, rng: np.random.Generator) -> Monitor:
    """A running run named ``r<index>`` with 100 steps of 5 metrics and 6 histograms sent."""
    monitor = Monitor(url=url, run=f"r{index:03d}", name=f"r{index:03d}")
    for step in range(100):
        metrics = {"loss": 1 / (step + 1), "val_loss": 1.2 / (step + 1), "accuracy": step / 100, "lr": 1e-3}
        monitor.log({**metrics, f"extra_{index % 3}": float(step)}, step=step)
        if step % 20 == 0:
            monitor.histogram("dense/kernel", rng.normal(size=500), step=step)
    return monitor


def sample(page: Any, cdp: Any, server: ServerProcess, runs: int) -> Sample:
    """The page as it stands, then its heap once BokehJS has dropped the models no root reaches."""
    cdp.send("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    models = int(page.evaluate(MODELS_JS))
    page.evaluate(RECOMPUTE_JS)
    cdp.send("HeapProfiler.collectGarbage")
    held = next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "JSHeapUsedSize")
    return Sample(
        runs=runs,
        heap=float(metrics["JSHeapUsedSize"]),
        held=float(held),
        nodes=int(metrics["Nodes"]),
        models=models,
        server_rss=rss_bytes(server.pid),
    )


def follow(browser: Any, baseline: bool, args: argparse.Namespace) -> list[Sample]:
    """Follow ``args.runs`` runs in a kiosk tab on a fresh server; the samples taken."""
    label = "without leak_fix.js" if baseline else "labscreen"
    server = labscreen_server(Path(tempfile.mkdtemp(prefix="labscreen-follow-")) / "store.sqlite", lifted=False)
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    rng = np.random.default_rng(0)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        context.add_init_script(script=FIND_JS)
        if baseline:
            context.route(re.compile(r"/\?kiosk=1$"), without_leak_fix)
        page = context.new_page()
        running = start_run(url, 0, rng)
        page.goto(f"{url}/?kiosk=1")
        page.wait_for_function(READY_JS, timeout=60_000)
        page.wait_for_function(DRAWN_JS, arg="r000", timeout=60_000, polling=100)
        cdp = cdp_performance(page)
        samples = [sample(page, cdp, server, 0)]
        for index in range(1, args.runs + 1):
            running.finish()
            running = start_run(url, index, rng)
            name = f"r{index:03d}"
            page.wait_for_function(SHOWS_JS, arg=name, timeout=60_000, polling=100)
            page.wait_for_function(DRAWN_JS, arg=name, timeout=60_000, polling=100)
            if index % args.sample_every == 0 or index == args.runs:
                samples.append(sample(page, cdp, server, index))
                s = samples[-1]
                print(f"{label}: {index} runs, heap {s.heap / MIB:.1f} MiB, {s.nodes} nodes", file=sys.stderr)
        running.finish()
        return samples
    finally:
        context.close()
        server.stop()


def verdict(samples: list[Sample]) -> str:
    """Bounded if the held heap at the end is within ``BOUND_MIB`` of the held heap half-way."""
    middle = min(samples, key=lambda s: abs(s.runs - samples[-1].runs / 2))
    growth = (samples[-1].held - middle.held) / MIB
    word = "bounded" if growth <= BOUND_MIB else "GROWS"
    return f"{word} ({growth:+.1f} MiB held from {middle.runs} to {samples[-1].runs} runs)"


def print_report(fixed: list[Sample], base: list[Sample]) -> None:
    print("| runs followed | page JS heap | without leak_fix.js | held once models are dropped | without "
          "| DOM nodes | without | document models | without | server RSS |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for a, b in zip(fixed, base, strict=True):
        print(f"| {a.runs} | {a.heap / MIB:.1f} MiB | {b.heap / MIB:.1f} MiB | {a.held / MIB:.1f} MiB "
              f"| {b.held / MIB:.1f} MiB | {a.nodes:,} | {b.nodes:,} | {a.models:,} | {b.models:,} "
              f"| {a.server_rss / MIB:.1f} MiB |")  # fmt: skip
    print()
    print(f"labscreen: {verdict(fixed)}; without leak_fix.js: {verdict(base)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40, help="runs the kiosk tab follows, per variant")
    parser.add_argument("--sample-every", type=int, default=10, help="runs between two samples")
    args = parser.parse_args(argv)
    if args.runs < 2 or args.sample_every < 1:
        parser.error("--runs must be at least 2 and --sample-every at least 1")
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            fixed = follow(browser, baseline=False, args=args)
            base = follow(browser, baseline=True, args=args)
        finally:
            browser.close()
    print_report(fixed, base)
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
