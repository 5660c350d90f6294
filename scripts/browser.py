"""Headless Chromium for the benchmark and screenshot scripts: launch, open the dashboard, read it back.

The same Debian Chromium and flags as the browser tests
(``tests/dashboard/conftest.py``), driven by playwright's sync API. Values
are read from the page's own Bokeh models (``Bokeh.documents[0]``); every
wait is on a condition in the page.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
READY_JS = "() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && Bokeh.documents[0].roots().length > 0"
FIND_JS = """window.__find = (name) => {
  if (window.Bokeh === undefined || Bokeh.documents.length === 0) return null;
  for (const root of Bokeh.documents[0].roots())
    for (const model of root.references()) if (model.name === name) return model;
  return null;
};"""
"""Defines ``__find(name)``: the live model of that name. An init script, so it survives the page's reloads."""
PAINTED_JS = """() => new Promise((resolve) =>
  requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.timeOrigin + performance.now()))))"""
"""Resolves after the frame following the current one has been produced: what was drawn is on screen."""
NOW_JS = "() => performance.timeOrigin + performance.now()"


def launch(playwright: Any) -> Any:
    """A headless Chromium ``Browser`` from a started ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def launch_profile(playwright: Any, directory: str, width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium with a profile in ``directory``, as a person's browser has: its ``BrowserContext``.

    Unlike a ``Browser.new_context()``, which is an incognito-like context,
    a profile keeps what a browser keeps between visits to a page, in
    particular V8's cache of compiled scripts: the third time a tab loads
    BokehJS (2 MB of scripts) it is not compiled again, and the page reaches
    DOMContentLoaded in about 0.2 s instead of 0.4-0.6 s here.
    """
    return playwright.chromium.launch_persistent_context(
        directory,
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        viewport={"width": width, "height": height},
    )


@dataclass
class Tab:
    """A dashboard page and how often it has reloaded itself since it first opened.

    The dashboard's watchdog reloads a page whose heartbeat has not changed
    for 8 s, which a page too busy to keep up can also trip.
    """

    page: Any
    reloads: int = 0

    def _loaded(self, _page: Any) -> None:
        # The page's "load" event, not "framenavigated": that one also fires when the page rewrites its
        # own address (the desk page names the runs picked), which is no reload.
        self.reloads += 1

    def close(self) -> None:
        """Close the page together with its browser context."""
        self.page.context.close()


def open_dashboard(
    browser: Any,
    url: str,
    *,
    width: int = 1400,
    height: int = 1000,
    timeout_ms: float = 60_000,
    init_scripts: Sequence[str] = (),
    context: Any = None,
) -> Tab:
    """Open ``url`` in a new browser context and wait until BokehJS has the document's roots.

    With ``context`` (a ``BrowserContext``, see ``launch_profile``) it opens
    as a new tab of that context instead, and ``browser`` is not used; the
    init scripts are then added to that context (once per call), and
    ``Tab.close`` would close the whole context: close such a tab's page.
    ``init_scripts`` run in the page before its own scripts, on every load.

    Returns:
        The tab; its page has ``window.__find(name)``, also after a reload.

    Raises:
        playwright's ``TimeoutError``: the document did not arrive within ``timeout_ms``.
    """
    if context is None:
        context = browser.new_context(viewport={"width": width, "height": height})
    for script in (FIND_JS, *init_scripts):
        context.add_init_script(script=script)
    tab = Tab(context.new_page())
    tab.page.goto(url)
    tab.page.wait_for_function(READY_JS, timeout=timeout_ms)
    tab.page.on("load", tab._loaded)
    return tab


def clock_offset_ms(page: Any, rounds: int = 15) -> tuple[float, float]:
    """The page's wall clock minus this process's ``time.time()``, in milliseconds.

    Both clocks are this machine's, but Chromium's ``performance.timeOrigin``
    is fixed at navigation, so it can drift from the system clock by a few ms.
    The estimate is taken from the fastest of ``rounds`` round trips.

    Returns:
        ``(offset_ms, uncertainty_ms)``: the uncertainty is half that round trip.
    """
    best: tuple[float, float] | None = None
    for _ in range(rounds):
        before = time.time()
        page_ms = float(page.evaluate(NOW_JS))
        after = time.time()
        sample = (page_ms - (before + after) * 500.0, (after - before) * 500.0)
        if best is None or sample[1] < best[1]:
            best = sample
    assert best is not None
    return best


def js_heap_bytes(cdp: Any) -> float:
    """Bytes of JavaScript heap in use, through a CDP session with ``Performance`` enabled."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))


def main_thread_seconds(cdp: Any) -> dict[str, float]:
    """Seconds the page's main thread has spent so far, by kind, through a CDP session with ``Performance``.

    Keys: ``task`` (everything), ``script``, ``layout``, ``style`` (style recalculation).
    """
    metrics = {m["name"]: float(m["value"]) for m in cdp.send("Performance.getMetrics")["metrics"]}
    names = {"task": "TaskDuration", "script": "ScriptDuration", "layout": "LayoutDuration"}
    return {key: metrics[name] for key, name in (*names.items(), ("style", "RecalcStyleDuration"))}


def cdp_performance(page: Any) -> Any:
    """A CDP session on ``page`` with the ``Performance`` domain enabled (for ``js_heap_bytes``)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    return cdp
