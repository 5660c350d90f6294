"""Server subprocesses for ``bench_ingest.py``: labscreen itself and a bare Tornado websocket server.

``ServerProcess`` starts a server on port 0, reads the bound port from its
first stdout line (``... (port N)``), reports its CPU time from ``/proc`` and
stops it with SIGTERM, so labscreen flushes its store. The bare server
(``serve_bare``) is the transport's ceiling: one ``WebSocketHandler`` on the
same Tornado settings as labscreen's ingest socket that answers each binary
message with the count of messages received so far, and does nothing else.

Linux only (``/proc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import struct
import subprocess
import sys
from pathlib import Path

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from monitor.wire import MAX_MESSAGE_BYTES

REPO = Path(__file__).resolve().parent.parent
WEBSOCKET_MAX_BYTES = 2 * MAX_MESSAGE_BYTES
"""Tornado's message cap, as ``monitor.server`` sets it."""
LIFTED_FRAME_LIMIT = "1e9"
"""``LABSCREEN_MAX_FRAMES_PER_SECOND`` for a server whose frame-rate limit never binds."""
_READY = re.compile(r"\(port (\d+)\)")
_COUNT = struct.Struct("<Q")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A server subprocess exited, or printed no port line in time."""


class ServerProcess:
    """A server subprocess that prints ``... (port N)`` as its first stdout line once bound.

    Not thread-safe; ``stop`` is safe to call twice or before ``start``.
    """

    def __init__(self, label: str, argv: list[str], env: dict[str, str]) -> None:
        self.label = label
        self.argv = argv
        self.env = env
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The ingest websocket URL."""
        return f"ws://127.0.0.1:{self.port}/ws/ingest"

    @property
    def pid(self) -> int:
        """Process id of the running server (0 when not running)."""
        return self._proc.pid if self._proc is not None else 0

    def start(self, timeout: float = 90.0) -> ServerProcess:
        """Start the process and wait for its port.

        Raises:
            StartError: it exited or printed no port line within ``timeout`` seconds.
        """
        self._proc = proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True, env=self.env, cwd=REPO)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        found = _READY.search(line)
        if found is None:
            self.stop()
            raise StartError(f"{self.label} did not start ({' '.join(self.argv)}); first line: {line!r}")
        self.port = int(found.group(1))
        return self

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds the process has used so far, all threads together."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        """SIGTERM (labscreen commits what is queued and closes its store), then kill after 30 s."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _clean_env(**settings: str) -> dict[str, str]:
    """This environment without any ``LABSCREEN_*`` variable, plus ``settings`` as ``LABSCREEN_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABSCREEN_")}
    env.update({f"LABSCREEN_{k.upper()}": v for k, v in settings.items()})
    return env


def labscreen_server(store: Path, lifted: bool) -> ServerProcess:
    """``labscreen serve`` on ``store``, with its default settings or its frame-rate limit lifted."""
    argv = [sys.executable, "-m", "monitor.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--store", str(store), "--log-level", "WARNING"]
    if lifted:
        return ServerProcess("labscreen, no frame limit", argv, _clean_env(max_frames_per_second=LIFTED_FRAME_LIMIT))
    return ServerProcess("labscreen, default limits", argv, _clean_env())


def bare_server(script: Path) -> ServerProcess:
    """The bare server, run as ``script --bare-server --port 0``."""
    argv = [sys.executable, str(script), "--bare-server", "--port", "0"]
    return ServerProcess("bare tornado websocket", argv, _clean_env())


def bare_ack(data: bytes) -> int:
    """The seq a bare-server reply acknowledges: its message count less the hello."""
    return int(_COUNT.unpack(data)[0]) - 1


class _CountingSocket(WebSocketHandler):
    """Answers each binary message with the number of messages received so far."""

    def initialize(self) -> None:
        self.count = 0

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)

    def on_message(self, message: str | bytes) -> None:
        self.count += 1
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(_COUNT.pack(self.count), binary=True)


async def serve_bare(port: int) -> None:
    """Serve ``/ws/ingest`` on 127.0.0.1 until SIGINT or SIGTERM; prints the bound port first.

    Raises:
        OSError: the port cannot be bound.
    """
    app = tornado.web.Application([(r"/ws/ingest", _CountingSocket)], websocket_max_message_size=WEBSOCKET_MAX_BYTES)
    sockets = bind_sockets(port, "127.0.0.1")
    server = HTTPServer(app, max_body_size=WEBSOCKET_MAX_BYTES)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    print(f"bare websocket serving on http://127.0.0.1:{bound} (port {bound})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.stop()
