"""A watch on one session's outgoing websocket writes: a viewer that stops reading is dropped.

Bokeh writes a session's frames one after another and awaits each until
Tornado has handed it to the kernel, while holding the session's document
lock. A viewer that does not read therefore stalls its own session: Tornado
holds at most the frame in flight (plus control frames), every later document
callback waits for the lock, and live messages wait in the session's bounded
hub subscription. Other sessions are not affected, but the stalled one holds
memory for nothing and shows a frozen page.

``Backlog`` checks, every ``check_ms`` on the event loop (not as a document
callback, which could not run while the lock is held), how many bytes each of
the session's connections has waiting in Tornado and whether any left since
the last check. A connection is *behind* while bytes wait and none left, or
while more than ``max_bytes`` wait. While any is behind the session's feed
holds its flushes (live updates coalesce); once behind for ``stall_seconds``
the connection is closed with ``CLOSE_TOO_SLOW`` and the session dropped, and
the page's watchdog reloads it when the browser reads again.

Thread safety: used only on the server's event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bokeh.document import Document
from bokeh.server.contexts import BokehSessionContext
from tornado.ioloop import PeriodicCallback
from tornado.iostream import BaseIOStream

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4408
"""Websocket close code for a viewer that did not read its updates."""
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_STALL_SECONDS = 10.0
CHECK_MS = 500


@dataclass
class _Watch:
    """What the last check saw of one connection."""

    written: int
    behind_since: float | None = None


def session_sockets(doc: Document) -> list[Any]:
    """The websocket handlers (Bokeh ``WSHandler``) currently subscribed to ``doc``'s session.

    Bokeh offers no public way from a session to its connections; its
    ``ServerSession`` keeps them in ``_subscribed_connections`` and each
    ``ServerConnection`` its handler in ``_socket``.
    """
    context = doc.session_context
    session = context.session if isinstance(context, BokehSessionContext) else None
    if session is None:
        return []
    return [connection._socket for connection in tuple(session._subscribed_connections)]


def socket_stream(socket: Any) -> BaseIOStream | None:
    """The open ``IOStream`` under a Tornado websocket handler, or None once it closed."""
    stream = getattr(getattr(socket, "ws_connection", None), "stream", None)
    return stream if isinstance(stream, BaseIOStream) and not stream.closed() else None


def outstanding_bytes(stream: BaseIOStream) -> int:
    """Bytes written to ``stream`` that Tornado still holds (not yet taken by the kernel).

    Tornado has no public accessor; its write buffer's length is this number.
    """
    return len(stream._write_buffer)


def bytes_written(stream: BaseIOStream) -> int:
    """Bytes ``stream`` has handed to the kernel since it opened (grows while the peer reads)."""
    return stream._total_write_done_index


class Backlog:
    """Decides, per session, whether its viewer keeps up; drops it when it does not.

    Invariants: ``behind`` is True exactly while some connection of the
    session was behind at the last check; ``on_clear`` is called when that
    turns False again; ``on_drop`` is called at most once, after which the
    watch has stopped. Holds no reference to a connection after it closed.
    """

    def __init__(
        self,
        doc: Document,
        on_clear: Callable[[], None],
        on_drop: Callable[[], None],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        check_ms: int = CHECK_MS,
    ) -> None:
        self._doc = doc
        self._on_clear, self._on_drop = on_clear, on_drop
        self.max_bytes, self.stall_seconds = max_bytes, stall_seconds
        self._watches: dict[int, _Watch] = {}
        self.behind = False
        self.peak_bytes = 0
        self._timer = PeriodicCallback(self.check, check_ms)

    def start(self) -> None:
        """Begin checking (on the event loop that serves the session)."""
        self._timer.start()

    def stop(self) -> None:
        """Stop checking; safe to call twice."""
        self._timer.stop()
        self._watches.clear()

    def clear(self) -> bool:
        """Whether the session may send now (no connection is behind)."""
        return not self.behind

    def check(self) -> None:
        """Look at every connection once; drop the session if one has been behind too long."""
        now = time.monotonic()
        watches: dict[int, _Watch] = {}
        stuck: Any = None
        for socket in session_sockets(self._doc):
            stream = socket_stream(socket)
            if stream is None:
                continue
            watch = self._advance(self._watches.get(id(socket)), stream, now)
            watches[id(socket)] = watch
            if watch.behind_since is not None and now - watch.behind_since >= self.stall_seconds:
                stuck = socket
        self._watches = watches
        if stuck is not None:
            self._drop(stuck)
            return
        was_behind, self.behind = self.behind, any(w.behind_since is not None for w in watches.values())
        if was_behind and not self.behind:
            self._on_clear()

    def _advance(self, watch: _Watch | None, stream: BaseIOStream, now: float) -> _Watch:
        waiting, written = outstanding_bytes(stream), bytes_written(stream)
        self.peak_bytes = max(self.peak_bytes, waiting)
        if watch is None:
            return _Watch(written)
        behind = waiting > self.max_bytes or (waiting > 0 and written == watch.written)
        since = (watch.behind_since or now) if behind else None
        return _Watch(written, since)

    def _drop(self, socket: Any) -> None:
        stream = socket_stream(socket)
        waiting = outstanding_bytes(stream) if stream is not None else 0
        request = getattr(socket, "request", None)
        log.warning(
            "dropping dashboard viewer %s: it has not kept up with its updates for %.0f s (%d bytes waiting); "
            "its page reloads once it reads again",
            getattr(request, "remote_ip", "?"),
            self.stall_seconds,
            waiting,
        )
        self.stop()
        self.behind = True
        # The close frame waits behind the unread bytes; Tornado aborts the stream 5 s later if
        # the peer never answers, which fails the pending write and releases the session's lock.
        socket.close(CLOSE_TOO_SLOW, "viewer too slow: reload the page")
        self._on_drop()
