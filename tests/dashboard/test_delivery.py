"""How flushes reach the page: one message per flush (``patches``), paced by the page's answers (``pacing``).

The page's websocket is watched from an init script: every ``PATCH-DOC``
content frame that arrives is parsed and its events counted by kind. The
page's answers are read on the server, from each session's ``Flow`` model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest

from monitor.dashboard.pacing import Flow
from producers.client import Monitor
from tests.dashboard.conftest import Viewer
from tests.dashboard.test_app import wait_until
from tests.serving import ServerThread

pytestmark = pytest.mark.browser
SERIES = [f"metric_{i}" for i in range(10)]
WATCH_JS = """(() => {
  window.__streams_per_message = [];
  const Native = window.WebSocket;
  window.WebSocket = function (...args) {
    const socket = new Native(...args);
    socket.addEventListener('message', (event) => {
      if (typeof event.data !== 'string' || !event.data.includes('"events"')) return;
      try {
        const content = JSON.parse(event.data);
        if (!Array.isArray(content.events)) return;
        window.__streams_per_message.push(content.events.filter((e) => e.kind === 'ColumnsStreamed').length);
      } catch (error) { /* a frame that is not JSON content */ }
    });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, Native);
})();"""


def test_one_flush_of_ten_series_arrives_as_one_message_in_order(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("batched")
    monitor.log(dict.fromkeys(SERIES, 0.0), step=0)
    viewer = viewers(server.url + "/?run=batched", init_scripts=(WATCH_JS,))
    for name in SERIES:
        viewer.wait_column_length(f"scalars:batched:{name}", "step", 1)
    before = len(viewer.page.evaluate("() => window.__streams_per_message"))

    monitor.log({name: float(i) for i, name in enumerate(SERIES)}, step=1)
    for i, name in enumerate(SERIES):
        assert viewer.wait_column_length(f"scalars:batched:{name}", "value", 2) == [0.0, float(i)]
    counts = viewer.page.evaluate("() => window.__streams_per_message")[before:]
    # Bokeh alone sends each stream as its own message; batched, the ten streams travel together.
    assert len(SERIES) in counts, f"streams per message after the step: {counts}"


def flows(server: ServerThread) -> list[tuple[int, int]]:
    """(flushes sent, flushes the page said it painted) of every dashboard session, read on the server."""

    def read() -> list[tuple[int, int]]:
        sessions = server.running._bokeh.get_sessions("/") if server.running._bokeh is not None else []
        roots = [root for session in sessions for root in session.document.roots]
        return [(cast(int, root.sent), cast(int, root.painted)) for root in roots if isinstance(root, Flow)]

    return server.call(read)


def test_the_page_answers_each_flush_it_has_painted(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("paced")
    monitor.log({"loss": 0.0}, step=0)
    viewer = viewers(server.url + "/?run=paced")
    viewer.wait_column_length("scalars:paced:loss", "step", 1)
    for step in range(1, 8):  # one flush each: the next is logged once the page has the last
        monitor.log({"loss": float(step)}, step=step)
        viewer.wait_column_length("scalars:paced:loss", "step", step + 1)
    [(sent, _)] = flows(server)
    assert sent >= 7  # the first point came with the history, not in a flush
    wait_until(lambda: flows(server)[0][1] >= sent, what="the page to answer every flush sent so far")
