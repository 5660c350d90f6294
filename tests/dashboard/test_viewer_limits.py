"""Viewer-side limits against a real server: a viewer that never reads, the viewer limit, freed sessions.

The viewer that never reads is a raw TCP socket that performs the websocket
upgrade of a real dashboard session (token taken from the served page) with
a tiny receive buffer and then never calls ``recv``: the kernel's buffers
fill and the server's writes to it stop draining, as for a frozen browser or
a dead link. Everything else is real headless Chromium; every wait is on a
condition.
"""

from __future__ import annotations

import base64
import gc
import os
import re
import socket
import threading
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Error as PlaywrightError
from tornado.iostream import IOStream

from monitor.dashboard.backlog import bytes_written, outstanding_bytes, socket_stream
from producers.client import Monitor
from tests.dashboard.conftest import Viewer
from tests.dashboard.test_app import subscribers, wait_until
from tests.serving import ServerThread

pytestmark = pytest.mark.browser
BACKLOG_CAP = 256 * 1024
STALL_SECONDS = 3.0


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    """The dashboard's server with a small backlog cap and stall time; ``indirect`` params add settings."""
    settings: dict[str, Any] = {
        "stale_after": 30.0, "max_viewer_backlog_bytes": BACKLOG_CAP, "viewer_stall_seconds": STALL_SECONDS,
    }  # fmt: skip
    settings.update(getattr(request, "param", {}))
    thread = ServerThread(tmp_path / "store.sqlite", **settings)
    thread.start()
    yield thread
    thread.stop()


class DeafViewer:
    """A dashboard session whose websocket is opened and then never read."""

    def __init__(self, server: ServerThread, query: str) -> None:
        page = urllib.request.urlopen(f"{server.url}/{query}", timeout=10).read().decode()
        match = re.search(r'"token":"([^"]+)"', page)
        assert match, "the dashboard page carries no session token"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", server.port))
        self.port = self.sock.getsockname()[1]
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {server.url}\r\n"
            f"Sec-WebSocket-Protocol: bokeh, {match.group(1)}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:  # read the upgrade answer byte by byte, not a byte of what follows
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def close(self) -> None:
        self.sock.close()


def connection_from(server: ServerThread, port: int) -> Any:
    """The server's Bokeh connection for the client socket bound to ``port``."""

    def find() -> Any:
        for connection in server.running._viewer_connections():
            stream = socket_stream(connection._socket)
            if isinstance(stream, IOStream) and stream.socket is not None and stream.socket.getpeername()[1] == port:
                return connection
        return None

    return wait_until(lambda: server.call(find), what="the deaf viewer's connection")


def backlog_of(server: ServerThread, connection: Any) -> int | None:
    """Bytes the server holds unread for ``connection``; None once it is gone."""

    def read() -> int | None:
        if connection not in server.running._viewer_connections():
            return None
        stream = socket_stream(connection._socket)
        return outstanding_bytes(stream) if stream is not None else 0

    return server.call(read)


def written_to_others(server: ServerThread, connection: Any) -> int:
    """Bytes the server has handed to the kernel for every viewer connection but ``connection``."""

    def read() -> int:
        streams = [socket_stream(c._socket) for c in server.running._viewer_connections() if c is not connection]
        return sum(bytes_written(s) for s in streams if s is not None)

    return server.call(read)


def shows_dashboard(page: Any) -> bool:
    """Whether the page shows the dashboard now (False while it is between two loads).

    Polled from Python: a ``wait_for_function`` started before the page
    reloads itself does not follow it to the new document promptly.
    """
    js = "() => !!(window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].get_model_by_name('header-run'))"
    try:
        return bool(page.evaluate(js))
    except PlaywrightError:
        return False


def too_slow(server: ServerThread) -> int:
    return server.call(lambda: server.running.metrics.errors["viewer_too_slow"])


class Producer(threading.Thread):
    """Until stopped: heavy panels for ``flood`` 20 times a second, one loss point for ``steady`` 5 times.

    The steady rate is one a headless Chromium on a busy shared machine keeps up with.
    """

    def __init__(self, steady: Monitor, flood: Monitor) -> None:
        super().__init__(name="producer")
        self.steady, self.flood, self.step, self.halt = steady, flood, 0, threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(0)
        y_true = rng.normal(size=1000)
        tick = 0
        while not self.halt.wait(0.05):
            outputs, embedding = y_true + rng.normal(size=1000), rng.normal(size=(1000, 2))
            self.flood.predictions("sample", y_true, outputs, step=tick, embedding=embedding)
            self.flood.histogram("w", rng.normal(size=5000), step=tick)
            tick += 1
            if tick % 4 == 0:
                self.step += 1
                self.steady.log({"loss": float(self.step)}, step=self.step)


def test_viewer_that_never_reads_is_dropped_while_others_keep_streaming(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    steady, flood = monitors("steady"), monitors("flood")
    steady.log({"loss": 0.0}, step=0)
    flood.log({"loss": 0.0}, step=0)
    reader = viewers(server.url + "/?run=steady")
    reader.wait_column_length("scalars:steady:loss", "step", 1)
    hub_before = subscribers(server)
    deaf = DeafViewer(server, "?run=flood&tab=predictions")  # the heavy panel in its document
    producer = Producer(steady, flood)
    try:
        connection = connection_from(server, deaf.port)
        wait_until(lambda: subscribers(server) == hub_before + 1, what="the deaf viewer's session to subscribe")
        producer.start()
        peak, others = 0, []

        def dropped() -> bool:
            nonlocal peak
            waiting = backlog_of(server, connection) or 0
            if waiting and too_slow(server) == 0:  # stuck, not yet dropped: are the others still served?
                others.append(written_to_others(server, connection))
            peak = max(peak, waiting)
            return too_slow(server) == 1

        wait_until(dropped, timeout=45, what="the viewer that never reads to be dropped")
        assert len(others) > 1 and others[-1] > others[0], "the reading viewer got nothing while the deaf one stalled"
        assert subscribers(server) == hub_before, "the dropped session still follows the hub"
        wait_until(lambda: backlog_of(server, connection) is None, timeout=15, what="its connection to close")
        connection = None
        assert peak <= BACKLOG_CAP, f"the server held {peak} unread bytes for it"
    finally:
        producer.halt.set()
        producer.join()
        deaf.close()
    last = producer.step
    js = """(n) => { const s = __find('scalars:steady:loss');
            return s && s.data.step.at(-1) === n ? Array.from(s.data.step) : null }"""
    steps = reader.wait(js, last, 30_000)
    assert steps == list(range(last + 1)), "the reading viewer missed updates"
    assert too_slow(server) == 1, "the reading viewer was dropped too"
    wait_until(
        lambda: server.call(lambda: server.running.dashboard_documents) == 1,
        timeout=20,
        what="the dropped session's Document to be discarded",
    )


@pytest.mark.parametrize("server", [{"max_viewers": 1}], indirect=True)
def test_viewer_beyond_the_limit_gets_a_notice_and_a_seat_once_one_frees(
    server: ServerThread, browser: Any, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitors("limited").log({"loss": 1.0}, step=0)
    context = browser.new_context()
    try:
        first = Viewer(context.new_page(), []).open(server.url + "/?run=limited")
        first.wait_column_length("scalars:limited:loss", "step", 1)
        second = viewers(server.url + "/?run=limited")
        second.wait_text("viewer-limit", "Viewer limit reached")
        assert "at most 1 viewers" in (second.text("viewer-limit") or "")
        assert server.call(lambda: server.running.metrics.errors["viewer_limit"]) >= 1
        metrics = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
        assert 'labscreen_errors_total{code="viewer_limit"}' in metrics
        first.wait_column_length("scalars:limited:loss", "step", 1)
    finally:
        context.close()
    # The notice retries by itself; once the closed tab's seat is free it becomes the dashboard.
    wait_until(lambda: shows_dashboard(second.page), timeout=45, what="the refused tab to get the dashboard")


def test_closed_tab_frees_its_session_and_document(
    server: ServerThread, browser: Any, monitors: Callable[..., Monitor]
) -> None:
    monitors("watched").log({"loss": 1.0}, step=0)

    def documents() -> int:
        return server.call(lambda: server.running.dashboard_documents)

    def session_documents() -> list[weakref.ref[Any]]:
        bokeh = server.running._bokeh
        assert bokeh is not None
        return [weakref.ref(s.document) for s in bokeh.get_sessions("/")]

    assert documents() == 0
    context = browser.new_context()
    try:
        viewer = Viewer(context.new_page(), []).open(server.url + "/?run=watched")
        viewer.wait_column_length("scalars:watched:loss", "step", 1)
        assert documents() == 1 and server.call(lambda: server.running.viewer_sessions) == 1
        refs = server.call(session_documents)
    finally:
        context.close()
    wait_until(lambda: documents() == 0, timeout=20, what="Bokeh to discard the closed tab's session")
    assert server.call(lambda: server.running.viewer_sessions) == 0
    assert subscribers(server) == 1, "only the run directory should still follow the hub"

    def collected() -> bool:
        gc.collect()
        return all(ref() is None for ref in refs)

    wait_until(lambda: server.call(collected), timeout=10, what="the closed tab's Document to be garbage collected")
