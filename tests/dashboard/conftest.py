"""Fixtures for dashboard tests: a real server thread, real producers, real Chromium.

The server is ``tests.serving.ServerThread`` (a ``LabscreenServer`` on port 0
in a background thread); producers are the real ``producers.Monitor``;
browsers are headless Debian Chromium driven by playwright's sync API. Every
page fails its test on a browser console error unless the test says which
errors it expects, on the warning that one of the page's BokehJS fixes
(``static/patching.js``) was skipped, and on BokehJS's "could not set initial
ranges", which a fix silences.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.client import Monitor
from tests.serving import ServerThread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
# BokehJS forgets removed models lazily (within 30 s, with static/leak_fix.js), so
# ``get_model_by_name`` can find a source the server already dropped; tests
# look models up among those reachable from the document's roots instead.
FIND_JS = """() => {
window.__find = (name) => {
  const found = [];
  for (const root of Bokeh.documents[0].roots())
    for (const model of root.references()) if (model.name === name) found.push(model);
  if (found.length > 1) throw new Error(`${found.length} live models are named ${name}`);
  return found.length ? found[0] : null;
};
}"""
READY_JS = "() => window.Bokeh !== undefined && Bokeh.documents.length > 0 && Bokeh.documents[0].roots().length > 0"
# Only the open tab's panel is in the document; the others hold a placeholder.
SHOWN_JS = """() => {
  const tabs = __find('tabs');
  if (tabs === null) return true;  // the kiosk view and the viewer-limit page have no tabs
  const holder = tabs.tabs[tabs.active].child;
  return holder.children.length > 0 && holder.children.every((c) => c.name !== 'tab-placeholder');
}"""
SHOW_JS = """(title) => {
  const tabs = __find('tabs');
  const index = tabs.tabs.findIndex((panel) => panel.title === title);
  if (index < 0) throw new Error(`no tab titled ${title}`);
  tabs.active = index;
  return true;
}"""
_counter = itertools.count()


class Viewer:
    """One browser tab on the dashboard, with helpers that read its Bokeh models."""

    def __init__(self, page: Any, allowed_errors: list[re.Pattern[str]]) -> None:
        self.page = page
        self.errors: list[str] = []
        self.allowed_errors = allowed_errors
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, message: Any) -> None:
        # A page fix skipped, or one that no longer works (paint_fix.js change 8: BokehJS's warning on
        # every paint of a chart with no data yet).
        noise = message.type == "warning" and (
            message.text.startswith("labscreen: BokehJS lacks") or "could not set initial ranges" in message.text
        )
        if (message.type == "error" or noise) and not any(p.search(message.text) for p in self.allowed_errors):
            self.errors.append(message.text)

    def open(self, url: str, timeout: float = 30_000) -> Viewer:
        """Load ``url`` and wait until its document and the open tab's panel are in the page."""
        self.page.goto(url)
        self.page.wait_for_function(READY_JS, timeout=timeout)
        self.page.evaluate(FIND_JS)
        self.page.wait_for_function(SHOWN_JS, timeout=timeout)
        return self

    def show(self, title: str) -> Viewer:
        """Open the tab titled ``title`` (as a click would) and wait until its panel is in the page."""
        self.page.evaluate(SHOW_JS, title)
        self.page.wait_for_function(SHOWN_JS, timeout=20_000, polling=50)
        return self

    def wait(self, js: str, arg: Any = None, timeout: float = 20_000) -> Any:
        """Wait until ``js`` (a function of ``arg``) returns something truthy; return it."""
        return self.page.wait_for_function(js, arg=arg, timeout=timeout, polling=50).json_value()

    def column(self, source: str, column: str) -> list[Any] | None:
        js = "([s, c]) => { const m = __find(s); return m ? Array.from(m.data[c] ?? []) : null }"
        return self.page.evaluate(js, [source, column])  # type: ignore[no-any-return]

    def text(self, name: str) -> str | None:
        js = "(n) => { const m = __find(n); return m ? m.text : null }"
        return self.page.evaluate(js, name)  # type: ignore[no-any-return]

    def wait_text(self, name: str, needle: str, timeout: float = 20_000) -> str:
        js = "([n, t]) => { const m = __find(n); return m && m.text.includes(t) ? m.text : null }"
        return str(self.wait(js, [name, needle], timeout))

    def wait_column_length(self, source: str, column: str, length: int, timeout: float = 20_000) -> list[Any]:
        js = """([s, c, n]) => { const m = __find(s);
                 return m && m.data[c] && m.data[c].length >= n ? Array.from(m.data[c]) : null }"""
        return list(self.wait(js, [source, column, length], timeout))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module, not session: Playwright's sync API keeps an event loop running on the main thread
    # while it is open, which would break every asyncio test that runs after the browser tests.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    """A real server on port 0; ``indirect`` params override its settings (e.g. ``{"stale_after": 1.0}``)."""
    thread = ServerThread(tmp_path / "store.sqlite", **{"stale_after": 30.0, **getattr(request, "param", {})})
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def viewers(browser: Any) -> Iterator[Callable[..., Viewer]]:
    """Opens tabs (each in its own browser context); checks their console at teardown."""
    opened: list[tuple[Any, Viewer]] = []

    def open_viewer(
        url: str,
        allowed_errors: tuple[str, ...] = (),
        viewport: dict[str, int] | None = None,
        init_scripts: tuple[str, ...] = (),
    ) -> Viewer:
        context = browser.new_context(viewport=viewport or {"width": 1400, "height": 1000})
        for script in init_scripts:
            context.add_init_script(script)
        viewer = Viewer(context.new_page(), [re.compile(p) for p in allowed_errors])
        opened.append((context, viewer))
        return viewer.open(url)

    yield open_viewer
    errors = [e for _, v in opened for e in v.errors]
    for context, _ in opened:
        context.close()
    assert not errors, f"browser console errors: {errors}"


@pytest.fixture
def monitors(server: ServerThread) -> Iterator[Callable[..., Monitor]]:
    """Starts real producers against the server; finishes them at teardown."""
    started: list[Monitor] = []

    def start(name: str | None = None, **kwargs: Any) -> Monitor:
        name = name or f"run{next(_counter)}"
        monitor = Monitor(url=server.url, run=kwargs.pop("run", name), name=name, flush_interval=0.01, **kwargs)
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        if not monitor.finished:
            monitor.finish(timeout=5)
