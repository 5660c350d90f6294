"""A flush reaches the page as one message: the batching of ``monitor.dashboard.patches``.

The page's websocket is watched from an init script: every ``PATCH-DOC``
content frame that arrives is parsed and its events counted by kind.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from producers.client import Monitor
from tests.dashboard.conftest import Viewer
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
