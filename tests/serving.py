"""A real labscreen server in a background thread, for tests and benchmarks.

``ServerThread`` runs ``LabscreenServer`` on its own IOLoop in a daemon
thread, so that test code (and the blocking ``Monitor`` producer) can run on
the main thread. ``stop`` and ``start`` again reuse the same port and store
file, which is how tests simulate a server going away and coming back.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from monitor.config import ServerConfig
from monitor.server import LabscreenServer

T = TypeVar("T")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """Runs one ``LabscreenServer`` at a time on a private event loop thread."""

    def __init__(self, store: str | Path, port: int = 0, **settings: Any) -> None:
        self.store_path = str(store)
        self.port = port
        self.settings = settings
        self.server: LabscreenServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> LabscreenServer:
        assert self.server is not None, "server is not running"
        return self.server

    def start(self) -> ServerThread:
        """Start (or restart, on the same port and store) and wait until bound."""
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="labscreen-test-server", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        return self

    def _serve(self, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            config = ServerConfig.resolve(
                environ={}, host="127.0.0.1", port=self.port, store=self.store_path, **self.settings
            )
            self.server = LabscreenServer(config)
            loop.run_until_complete(self._start_on_loop())
            self.port = self.server.port
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _start_on_loop(self) -> None:
        assert self.server is not None
        self.server.start()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the server's loop thread and return its result."""
        assert self._loop is not None
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def stop(self) -> None:
        """Stop the server (flushing its store) and its thread."""
        if self._loop is None or self.server is None:
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=30)
        self.server = None
        self._loop = None

    def restart(self) -> ServerThread:
        """Stop, then start again on the same port and store file."""
        self.stop()
        return self.start()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
