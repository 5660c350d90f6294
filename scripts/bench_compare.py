"""Compare: adding a run to a comparison in a Chromium tab, beside reading and drawing every run shown again.

``labscreen serve`` runs on a temporary SQLite store; real ``Monitor``
producers write ``--runs`` finished runs of ``--metrics`` series over
``--steps`` steps each (25 series: 25 charts). A headless Chromium tab shows
the first run; then, for each further run:

- **added**: the run is added to the comparison (the picker's value becomes
  the runs shown plus it). The session keeps the charts and the lines of the
  runs already shown and reads and draws the added run alone
  (``DashboardSession._compare``);
- **all again**: the page shows one other run (a pick, not timed), then
  the same runs are picked at once. None of them is shown, so every panel
  is reset and every run read and drawn in new figures: what every pick
  cost before a comparison kept its runs (the baseline, on the same page
  and machine).

Each is timed from the pick until every series of the runs
shown has its points in the page's ``ColumnDataSource`` and two frames have
been drawn since, with the page's main-thread seconds (CDP
``TaskDuration``) over that time.

Usage::

    .venv/bin/python scripts/bench_compare.py              # 6 runs of 25 series x 4,000 steps: about 2 minutes
    .venv/bin/python scripts/bench_compare.py --quick      # 4 runs of 10 series x 1,000 steps

Prints a markdown table on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_servers import labscreen_server
from browser import PAINTED_JS, cdp_performance, launch, main_thread_seconds, open_dashboard

from producers.client import Monitor

SERIES_JS = """([runs, series, points]) => {
  let full = 0;
  for (const root of Bokeh.documents[0].roots())
    for (const model of root.references())
      if (model.name && runs.some((run) => model.name.startsWith(`scalars:${run}:`))
          && model.data.step && model.data.step.length >= points) full += 1;
  return full >= runs.length * series;
}"""
"""True once every series of ``runs`` has at least ``points`` points in the page."""
PICK_JS = "(runs) => { __find('run-picker').value = runs }"
PRIMARY_JS = "(name) => { const m = __find('header-run'); return m !== null && m.text.includes(`<b>${name}</b>`) }"


@dataclass
class Timing:
    """One pick: seconds until the curves are there and drawn, and the page's main-thread seconds meanwhile."""

    seconds: float
    busy: float


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def series_names(count: int) -> list[str]:
    """``count`` series: a loss and an accuracy with their validation twins, then one chart each."""
    names = ["loss", "val_loss", "accuracy", "val_accuracy"][:count]
    return names + [f"metric_{i}" for i in range(count - len(names))]


def run_name(index: int) -> str:
    return f"compare-{index}"


def write_runs(url: str, runs: int, names: list[str], steps: int) -> list[str]:
    """Write ``runs`` finished runs through real producers; their ids, oldest first."""
    ids = []
    for index in range(runs):
        monitor = Monitor(url, name=run_name(index), project="bench")
        for step in range(steps):
            monitor.log({n: (1 + k) * math.exp(-step / steps) + 0.01 * index for k, n in enumerate(names)}, step=step)
        report = monitor.finish(timeout=120)
        if report.undelivered:
            raise RuntimeError(f"run {monitor.run}: {report.undelivered} frames undelivered")
        ids.append(monitor.run)
    return ids


def pick(page: Any, cdp: Any, runs: list[str], series: int, points: int, *, primary: str) -> Timing:
    """Show ``runs`` (the header names ``primary``) and time it until every series of them is in the page, drawn."""
    busy = main_thread_seconds(cdp)["task"]
    start = time.perf_counter()
    page.evaluate(PICK_JS, runs)
    page.wait_for_function(PRIMARY_JS, arg=primary, timeout=120_000, polling=100)
    page.wait_for_function(SERIES_JS, arg=[runs, series, points], timeout=120_000, polling=100)
    page.evaluate(PAINTED_JS)
    return Timing(time.perf_counter() - start, main_thread_seconds(cdp)["task"] - busy)


def measure(url: str, ids: list[str], series: int, points: int) -> list[tuple[int, Timing, Timing]]:
    """For each run after the first but the last: adding it, then the same runs all again (its row)."""
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            tab = open_dashboard(browser, f"{url}/?run={ids[0]}", timeout_ms=120_000)
            page = tab.page
            page.wait_for_function(SERIES_JS, arg=[ids[:1], series, points], timeout=120_000, polling=100)
            page.evaluate(PAINTED_JS)
            cdp = cdp_performance(page)
            other = len(ids) - 1  # the last run is shown between the two, never compared
            for count in range(2, other + 1):
                shown = ids[:count]  # ids[i] is named run_name(i)
                progress(f"{count} runs shown")
                add = pick(page, cdp, shown, series, points, primary=run_name(0))
                pick(page, cdp, [ids[other]], series, points, primary=run_name(other))
                again = pick(page, cdp, shown, series, points, primary=run_name(0))
                rows.append((count, add, again))
            if tab.reloads:
                progress(f"the page reloaded itself {tab.reloads}x (its watchdog): the times above include that")
        finally:
            browser.close()
    return rows


def print_report(rows: list[tuple[int, Timing, Timing]], runs: int, series: int, steps: int) -> None:
    print(f"### Adding a run to a comparison: {runs} runs of {series} series x {steps:,} steps ({series} charts)")
    print()
    print("| runs shown | added: curves drawn | page main thread | all again: curves drawn | page main thread |")
    print("|---:|---:|---:|---:|---:|")
    for count, add, again in rows:
        print(f"| {count} | {add.seconds:.2f} s | {add.busy:.2f} s | {again.seconds:.2f} s | {again.busy:.2f} s |")
    ratios = [again.seconds / add.seconds for _, add, again in rows if add.seconds > 0]
    if ratios:
        print()
        median = statistics.median(ratios)
        print(f"Adding a run took {median:.1f}x less time than reading and drawing all again (median).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 runs of 10 series x 1,000 steps")
    parser.add_argument("--runs", type=int, default=6, help="runs compared in the end")
    parser.add_argument("--metrics", type=int, default=25, help="series per run (one chart each but the val_ twins)")
    parser.add_argument("--steps", type=int, default=4000, help="steps per series")
    args = parser.parse_args(argv)
    runs, metrics, steps = (4, 10, 1000) if args.quick else (args.runs, args.metrics, args.steps)
    if runs < 2 or metrics < 1 or steps < 2:
        parser.error("--runs must be at least 2, --metrics at least 1 and --steps at least 2")
    names = series_names(metrics)
    points = min(steps, 1000)  # every line is at least this long in the page (the history keeps ~2,000 a line)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        server = labscreen_server(Path(tmp) / "compare.sqlite", lifted=False).start()
        try:
            progress(f"writing {runs + 1} runs of {metrics} series x {steps:,} steps")
            ids = write_runs(server.url, runs + 1, names, steps)
            rows = measure(f"http://127.0.0.1:{server.port}", ids, len(names), points)
        finally:
            server.stop()
    print_report(rows, runs, len(names), steps)
    print(f"\n({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
