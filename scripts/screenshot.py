"""Screenshot of the live dashboard with every panel populated: writes ``docs/dashboard.png``.

Starts ``labscreen serve`` on a temporary store and a real producer: the
demo's Keras training (``scripts/demo_train.py``: a small CNN on
scikit-learn's bundled digits with ``MonitorCallback`` sending curves,
weight and gradient histograms with their norms and update ratios,
predictions with an embedding, data summaries, the model graph and events)
in its own process. Once training has run for ``--warmup`` seconds the
trainer is frozen (SIGSTOP) and headless Chromium opens the run. The Weights
tab is switched to a weight tensor (``--tensor``; the default pick, a
gradient, has no update ratio). Each tab is then opened in turn and, once its
models have data, photographed whole (a full-page screenshot) with the server
frozen as well (see ``settle``). The tabs are composed into one PNG: the
Training tab with the header at full size, the other tabs' content below it
in two columns at half size. The producer then resumes and is stopped with
SIGINT (the run ends as finished).

    .venv/bin/python scripts/screenshot.py                  # about 2.5 minutes (TensorFlow's import included)
    .venv/bin/python scripts/screenshot.py --warmup 20      # a minute faster, shorter curves
    .venv/bin/python scripts/screenshot.py --kiosk --width 1920 --height 1080 --out docs/kiosk.png

Writes the PNG's path and size on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_servers import REPO, ServerProcess, labscreen_server
from browser import PAINTED_JS, launch, open_dashboard
from PIL import Image, ImageChops, ImageDraw, ImageFont

TABS = {
    "Training": ("curves-grid", "events"),
    "Weights": ("weights-current", "weights-bands", "weights-norm", "weights-ratio", "weights-heatmap"),
    "Predictions": ("predictions-classes", "predictions-sample", "predictions-confusion", "predictions-embedding"),
    "Data": ("data-feature", "data-labels", "data-scatter"),
    "Model": ("model-nodes", "model-edges"),
    "Runs": ("runs-table",),
}
"""Each tab, and the models it shows that a populated page has data in (only the open tab is in the page)."""
EMPTY_JS = """(names) => names.filter((n) => {
  const m = __find(n);
  if (m === null) return true;
  if (n === 'weights-heatmap') return m.data.image[0].length <= 1;  // starts as a 1x1 image
  if (n === 'curves-grid') return m.children.length === 0;
  if (n === 'events') return !m.text.includes('training started');
  return !Object.values(m.data).some((c) => c.length > 0);
})"""
"""The names among ``names`` whose models are still empty (an empty list: all have data)."""
SHOW_JS = """(i) => { __find('tabs').active = i }"""
CALM_WATCHDOG_JS = """Object.defineProperty(window, "LABSCREEN", {configurable: true,
  get() { return this.__labscreen; },
  set(value) { this.__labscreen = Object.assign({}, value, {stall_ms: 3600000}); }});"""
"""Raises the page watchdog's heartbeat allowance to an hour (it reads ``window.LABSCREEN.stall_ms``)."""
MARGIN = 16
BACKGROUND = (255, 255, 255)
CAPTION = (68, 68, 68)
CAPTION_SIZE = 22


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def start_training(url: str, minutes: float, log: Path) -> subprocess.Popen[bytes]:
    """The demo's Keras training streaming to ``url``, as its own process."""
    argv = [sys.executable, str(REPO / "scripts" / "demo_train.py"), url, "--minutes", str(minutes)]
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def stop_training(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (the callback finishes the run), then kill after 60 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def shoot_tabs(page: Any, server_pid: int) -> list[Image.Image]:
    """One full-page screenshot per tab, once its models have data and its plots have painted.

    Each tab is opened with the server running (the server puts the opened
    tab's panel in the page), then photographed with the server frozen
    (see ``settle``). Returns with the server running and the first tab open.
    """
    shots = []
    for index, (title, names) in enumerate(TABS.items()):
        page.evaluate(SHOW_JS, index)
        settle(page, server_pid, names)
        try:
            page.wait_for_timeout(1500)  # let the tab's views lay out; then wait for paint
            page.evaluate(PAINTED_JS)
            shots.append(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB"))
        finally:
            os.kill(server_pid, signal.SIGCONT)
        progress(f"photographed the {title} tab")
    page.evaluate(SHOW_JS, 0)
    return shots


def tab_body(shot: Image.Image, top: int) -> Image.Image:
    """The part of a tab's screenshot below the header and the tab strip, trimmed of empty space."""
    body = shot.crop((0, top, shot.width, shot.height))
    background = Image.new("RGB", body.size, BACKGROUND)
    box = ImageChops.difference(body, background).getbbox()
    return body.crop((0, 0, body.width, min(box[3] + MARGIN, body.height))) if box else body


def captioned(image: Image.Image, title: str) -> Image.Image:
    """``image`` under a line naming its tab."""
    font = ImageFont.load_default(size=CAPTION_SIZE)
    band = CAPTION_SIZE + MARGIN // 2
    out = Image.new("RGB", (image.width, image.height + band), BACKGROUND)
    ImageDraw.Draw(out).text((0, 0), f"{title} tab", fill=CAPTION, font=font)
    out.paste(image, (0, band))
    return out


def compose(shots: list[Image.Image], tabs_top: int) -> Image.Image:
    """Training tab at full size; the other tabs below in two columns at half size, each captioned."""
    training = tab_body(shots[0], 0)
    width = training.width
    half = (width - 3 * MARGIN) // 2
    others = []
    for shot, title in zip(shots[1:], list(TABS)[1:], strict=True):
        body = tab_body(shot, tabs_top)
        body = body.resize((half, round(body.height * half / body.width)), Image.Resampling.LANCZOS)
        others.append(captioned(body, title))
    rows = [others[i : i + 2] for i in range(0, len(others), 2)]
    height = training.height + sum(max(im.height for im in row) + MARGIN for row in rows) + MARGIN
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    canvas.paste(training, (0, 0))
    y = training.height + MARGIN
    for row in rows:
        for column, image in enumerate(row):
            canvas.paste(image, (MARGIN + column * (half + MARGIN), y))
        y += max(im.height for im in row) + MARGIN
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png", help="PNG to write")
    parser.add_argument("--warmup", type=float, default=75.0, help="seconds of training before the screenshot")
    parser.add_argument("--width", type=int, default=1500, help="viewport width")
    parser.add_argument("--height", type=int, default=1100, help="viewport height")
    parser.add_argument("--training-only", action="store_true", help="only the Training tab, not composed")
    parser.add_argument(
        "--kiosk", action="store_true", help="the lab-screen view's first page instead (e.g. --out docs/kiosk.png)"
    )
    parser.add_argument(
        "--tensor", default="", help="tensor shown in the Weights tab (default: the first weights/*kernel)"
    )
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="labscreen-shot-") as tmp:
        server = labscreen_server(Path(tmp) / "shot.sqlite", lifted=False).start()
        url = f"http://127.0.0.1:{server.port}"
        training = start_training(url, minutes=args.warmup / 60 + 5, log=Path(tmp) / "train.log")
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                try:
                    image = photograph(browser, url, server, training, args)
                finally:
                    browser.close()
        finally:
            os.kill(server.pid, signal.SIGCONT)
            stop_training(training)
            server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({image.width}x{image.height})")
    return 0


def photograph(
    browser: Any, url: str, server: ServerProcess, training: subprocess.Popen[bytes], args: argparse.Namespace
) -> Image.Image:
    """Let the run train ``--warmup`` seconds, freeze the trainer, then open the page and shoot its tabs.

    The trainer stays frozen (SIGSTOP) from then on, so the run still shows
    as running. The page is photographed with the server frozen too: on a
    slow machine the page's relayouts for the server's once-a-second header
    and heartbeat updates can outlast the second, and a page whose task queue
    never drains would never get to the screenshot. The page's watchdog is
    told to allow an hour of heartbeat silence meanwhile.
    """
    run = wait_for_run(url, training)
    progress(f"run {run} is streaming; training {args.warmup:.0f} s before the screenshot")
    time.sleep(args.warmup)
    if training.poll() is not None:
        raise RuntimeError(f"the training process exited early with code {training.returncode}")
    training.send_signal(signal.SIGSTOP)
    if args.kiosk:
        return photograph_kiosk(browser, url, server, args)
    tab = _open(browser, f"{url}/?run={run}", args)
    try:
        choose_tensor(tab.page, args.tensor)
        shots = shoot_tabs(tab.page, server.pid)
        tabs_top = _tabs_top(tab.page)
    finally:
        os.kill(server.pid, signal.SIGCONT)
        tab.close()
    return shots[0] if args.training_only else compose(shots, tabs_top)


def photograph_kiosk(browser: Any, url: str, server: ServerProcess, args: argparse.Namespace) -> Image.Image:
    """The lab-screen view (``/?kiosk=1``) as a screen shows it: its first page, the window's size, no scrolling.

    Its pages would turn every 20 s; ``cycle`` keeps the first one up while it settles.
    """
    tab = _open(browser, f"{url}/?kiosk=1&cycle=3600", args)
    try:
        settle(tab.page, server.pid, ("curves-grid",))
        try:
            tab.page.wait_for_timeout(1500)  # let the views lay out; then wait for paint
            tab.page.evaluate(PAINTED_JS)
            shot = Image.open(io.BytesIO(tab.page.screenshot())).convert("RGB")
        finally:
            os.kill(server.pid, signal.SIGCONT)
        progress("photographed the lab-screen view")
    finally:
        tab.close()
    return shot


def _open(browser: Any, url: str, args: argparse.Namespace) -> Any:
    """``url`` in a new tab of the ``--width`` x ``--height`` window, its watchdog calmed (see ``photograph``)."""
    return open_dashboard(
        browser, url, width=args.width, height=args.height, timeout_ms=300_000, init_scripts=[CALM_WATCHDOG_JS]
    )


def choose_tensor(page: Any, wanted: str) -> None:
    """Show ``wanted`` (or the first ``weights/...kernel``) in the Weights tab and wait for its norm and ratio.

    The picker's default is the first tensor by name, a gradient, which has
    no update ratio; a weight tensor fills every chart of the tab. The server
    must be running: it redraws the tab for the new choice.

    Raises:
        RuntimeError: no such tensor, or its charts did not fill within 120 s.
    """
    page.evaluate(SHOW_JS, list(TABS).index("Weights"))
    page.wait_for_function("() => __find('weights-layer') !== null && __find('weights-layer').options.length > 0")
    options = [str(o) for o in page.evaluate("() => __find('weights-layer').options")]
    weights = [o for o in options if o.startswith("weights/") and o.endswith("kernel")]
    name = wanted or (weights[0] if weights else "")
    if name not in options:
        raise RuntimeError(f"no tensor {name!r} in the Weights tab; it offers {options}")
    page.evaluate("(name) => { __find('weights-layer').value = name }", name)
    page.wait_for_function(
        "() => __find('weights-norm').data.step.length > 0 && __find('weights-ratio').data.step.length > 0",
        timeout=120_000,
    )
    progress(f"the Weights tab shows {name}")


def settle(page: Any, server_pid: int, names: tuple[str, ...], rounds: int = 12) -> None:
    """Let the server run 5 s, then freeze it until the page has caught up; repeat until ``names`` have data.

    Returns with the server frozen (SIGSTOP).

    Raises:
        RuntimeError: the models were not all populated after ``rounds`` rounds.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(1, rounds + 1):
        time.sleep(5.0)
        os.kill(server_pid, signal.SIGSTOP)
        try:
            page.wait_for_function(
                f"(names) => ({EMPTY_JS})(names).length === 0", arg=list(names), timeout=30_000, polling=500
            )
        except PlaywrightTimeout:
            progress(f"round {attempt}: still empty: {', '.join(page.evaluate(EMPTY_JS, list(names)))}")
            os.kill(server_pid, signal.SIGCONT)
            continue
        progress(f"{', '.join(names)} have data (round {attempt})")
        return
    os.kill(server_pid, signal.SIGCONT)
    raise RuntimeError(f"the page never showed data in {page.evaluate(EMPTY_JS, list(names))}")


def wait_for_run(url: str, training: subprocess.Popen[bytes], timeout: float = 300.0) -> str:
    """The id of the first run that has logged a step (the trainer needs a while to import TensorFlow).

    Raises:
        RuntimeError: the trainer exited, or no run logged a step within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and training.poll() is None:
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(f"{url}/api/runs", timeout=5) as answer:
            runs = [r for r in json.loads(answer.read())["runs"] if r.get("last_step") is not None]
            if runs:
                return str(runs[0]["id"])
        time.sleep(1.0)
    raise RuntimeError("no run logged a step: see the training log")


def _tabs_top(page: Any) -> int:
    """Page y of the first tab's content (below the header, events strip and tab strip)."""
    js = """() => {
      const find = (root) => { for (const el of root.querySelectorAll('*')) {
          if (el.classList && el.classList.contains('bk-header')) return el;
          if (el.shadowRoot) { const f = find(el.shadowRoot); if (f) return f; } } return null; };
      const strip = find(document);
      return strip ? strip.getBoundingClientRect().bottom + window.scrollY : 0;
    }"""
    return int(page.evaluate(js))


if __name__ == "__main__":
    raise SystemExit(main())
