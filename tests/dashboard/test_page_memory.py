"""A page that switches runs lets go of what it no longer shows (``static/leak_fix.js``).

A lab screen in kiosk mode switches to every new run on its own, for days.
Each switch builds new charts and renders the run picker again. BokehJS 3.9
kept every replaced plot reachable through a listener on
``window.visualViewport``, every replaced choices.js picker through
listeners on ``<html>``, and never forgot a removed model while data kept
streaming. These tests read the page's event listeners through the DevTools
protocol and its document's model set, and fail on BokehJS without the fixes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from producers.client import Monitor
from tests.dashboard.conftest import Viewer

LIVE_PLOTS_JS = """() => {
  const { Plot } = Bokeh.require("models/plots/plot");
  const live = new Set();
  for (const root of Bokeh.documents[0].roots())
    for (const model of root.references()) if (model instanceof Plot) live.add(model);
  return live.size;
}"""
FORGOTTEN_JS = """() => {
  const doc = Bokeh.documents[0];
  const reachable = new Set();
  for (const root of doc.all_roots) for (const model of root.references()) reachable.add(model);
  return doc._all_models.size === reachable.size;
}"""

SHORT_RECOMPUTE_JS = """() => {
  const doc = Bokeh.documents[0];
  doc._recompute_timeout = 300;
  doc._cancel_recompute_all_models();  // one scheduled with the 30 s timeout
  doc._schedule_recompute_all_models();
  const first = doc._recompute_timer;
  doc._schedule_recompute_all_models();  // as each change does: a debounce would start again
  return first !== null && doc._recompute_timer === first;
}"""


def listeners(viewer: Viewer, target: str) -> dict[str, int]:
    """Event listeners on the page object ``target`` (a JS expression), counted by event type."""
    cdp = viewer.page.context.new_cdp_session(viewer.page)
    try:
        found = cdp.send("Runtime.evaluate", {"expression": target})["result"]
        counts: dict[str, int] = {}
        for listener in cdp.send("DOMDebugger.getEventListeners", {"objectId": found["objectId"]})["listeners"]:
            counts[listener["type"]] = counts.get(listener["type"], 0) + 1
        return counts
    finally:
        cdp.detach()


def start_run(monitors: Callable[..., Monitor], name: str) -> Monitor:
    monitor = monitors(name)
    monitor.log({"loss": 1.0, "accuracy": 0.5}, step=0)
    return monitor


@pytest.fixture
def streaming() -> Iterator[Callable[[Monitor], None]]:
    """Keeps logging to a run from a background thread until the test ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def stream(monitor: Monitor) -> None:
        def loop() -> None:
            step = 1
            while not stop.wait(0.02):
                monitor.log({"loss": 1.0 / step}, step=step)
                step += 1

        threads.append(threading.Thread(target=loop, daemon=True))
        threads[-1].start()

    yield stream
    stop.set()
    for thread in threads:
        thread.join()


def test_switching_runs_leaves_no_old_plot_or_picker_listening_on_the_page(
    viewers: Callable[..., Viewer], monitors: Callable[..., Monitor], server: Any
) -> None:
    previous = start_run(monitors, "first")
    viewer = viewers(server.url + "/?kiosk=1")
    viewer.wait_text("header-run", "first")
    viewer.wait_column_length("scalars:first:loss", "step", 1)
    page_listeners = listeners(viewer, "document.documentElement")
    for name in ("second", "third", "fourth"):
        previous.finish()
        previous = start_run(monitors, name)  # kiosk mode follows the newest running run
        viewer.wait_text("header-run", name)
        viewer.wait_column_length(f"scalars:{name}:loss", "step", 1)
    # Each live PlotView listens for the viewport's resizes; a replaced one must not. Views are
    # built asynchronously, so a plot reachable in the document may not have its view yet.
    deadline = time.monotonic() + 20
    while (resize := listeners(viewer, "window.visualViewport").get("resize", 0)) != (
        plots := viewer.page.evaluate(LIVE_PLOTS_JS)
    ):
        assert time.monotonic() < deadline, f"{resize} viewport listeners for {plots} live plots"
        viewer.page.wait_for_timeout(50)
    assert plots >= 2  # the loss and accuracy charts
    # choices.js listens on <html> while a picker is alive; old pickers must stop.
    assert listeners(viewer, "document.documentElement") == page_listeners


def test_models_the_server_dropped_are_forgotten_while_data_keeps_streaming(
    viewers: Callable[..., Viewer], monitors: Callable[..., Monitor], server: Any,
    streaming: Callable[[Monitor], None],
) -> None:  # fmt: skip
    before = start_run(monitors, "before")
    viewer = viewers(server.url + "/?kiosk=1")
    viewer.wait_column_length("scalars:before:loss", "step", 1)
    before.finish()
    # BokehJS forgets unreachable models after its recompute timeout (30 s, too long for a
    # test): with 0.3 s, a stream flushing every 50 ms restarted BokehJS's own wait forever.
    assert viewer.page.evaluate(SHORT_RECOMPUTE_JS), "a change put off the recompute already scheduled"
    live = start_run(monitors, "live")
    streaming(live)
    viewer.wait_text("header-run", "live")
    viewer.wait_column_length("scalars:live:loss", "step", 20)  # the stream goes on meanwhile
    viewer.wait(FORGOTTEN_JS, timeout=20_000)


LIVE_CONNECTIONS_JS = """async () => {
  const { receivers_for_sender } = Bokeh.require("core/signaling");
  const count = () => {
    let live = 0;
    for (const root of Bokeh.documents[0].roots())
      for (const model of root.references())
        for (const connection of receivers_for_sender.get(model) ?? []) if (connection.signal != null) live++;
    return live;
  };
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  // An idle moment too: plots get their toolbars (and its views) then (paint_fix.js change 12).
  const idle = () => new Promise((resolve) => requestIdleCallback(resolve, { timeout: 3000 }));
  let last = -1;
  for (let now = count(); now !== last; now = count()) { last = now; await frame(); await idle(); await frame(); }
  return last;
}"""


def test_a_tab_shown_again_leaves_its_earlier_views_unconnected(
    viewers: Callable[..., Viewer], monitors: Callable[..., Monitor], server: Any
) -> None:
    monitor = start_run(monitors, "tabs")
    monitor.histogram("dense/kernel", [0.1, 0.2, 0.3, 0.5], step=0)
    viewer = viewers(server.url + "/?run=tabs")
    viewer.show("Weights").wait_column_length("weights-current", "top", 1)
    viewer.show("Training").show("Weights")
    first = viewer.page.evaluate(LIVE_CONNECTIONS_JS)
    for _ in range(3):
        viewer.show("Training").show("Weights")
    # The weights panel's models outlive its views: its charts' visuals and plots listened to
    # them without naming the view, so each showing added listeners that kept old views alive.
    assert viewer.page.evaluate(LIVE_CONNECTIONS_JS) == first
