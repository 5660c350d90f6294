"""The producer's background thread: batching, sequencing, the connection, resends.

``Sender`` owns one daemon thread that runs its own asyncio loop. The
training thread only appends items to a deque (``submit``); the loop turns
them into frames (histograms are computed and frames encoded here), numbers
them, keeps each in a ``FrameBuffer`` until the server acknowledges it, and
sends them over a websocket opened with ``tornado.websocket.websocket_connect``
(``open_websocket``, which closes a connection whose handshake completes
after the run stopped waiting for it).
The link reconnects with exponential backoff and jitter, and after every
``welcome`` resends what the server does not have, oldest first. A
``Ledger`` keeps the books that become the ``DeliveryReport``.

Dropped frames are told to the run as ``warning`` events: on every
``welcome``, at most every ``DROP_ANNOUNCE_INTERVAL`` s while connected, and
once more on closing when the server has everything, so with the server
reachable at the end the announcements add up to the report's ``dropped``.

Hand-over bound: the deque holds at most ``MAX_QUEUED_ITEMS``; a caller
that outruns the loop by more than that (a tight loop logging while the
spool churns) has its oldest calls discarded, counted as ``discarded`` in
the report and warned about once, so memory stays bounded. The loop frames
at most ``DRAIN_SLICE`` items per turn so acknowledgements keep flowing.

Wake-up: the loop sets ``_asleep`` before it waits for items; ``submit`` pays
for ``call_soon_threadsafe`` only when it sees that flag, so a busy loop
costs the caller one deque append. After idle an item is framed at once;
under load the loop coalesces what arrives within ``flush_interval``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.ioloop import IOLoop
from tornado.netutil import DefaultLoopResolver
from tornado.websocket import WebSocketClientConnection, websocket_connect

from monitor.wire import Ack, Error, Event, Hello, ProtocolError, Welcome, decode, encode
from producers.items import Builder, Item
from producers.spool import DeliveryReport, FrameBuffer, Ledger
from producers.stats import ScalarItem, chunk_scalars, scalars_message

logger = logging.getLogger(__name__)

_MAX_INFLIGHT_BYTES = 8 * 1024 * 1024
_CONNECT_TIMEOUT = 5.0
_REPLY_TIMEOUT = 10.0
_CLOSE_STORE_UNAVAILABLE = 4503
"""The server's close code when its store cannot take data (``monitor.ingest.CLOSE_STORE_UNAVAILABLE``)."""
_ACK_TIMEOUT = 30.0
"""Seconds a sent frame may wait for an acknowledgement before the link is taken for stalled and reopened."""
_STOP_GRACE = 0.25
"""Seconds ``close`` waits past its timeout for the thread to stop (it cancels its tasks, closes the link)."""
DROP_ANNOUNCE_INTERVAL = 5.0
"""Least seconds between two announcements of frames dropped while connected."""


class Backoff:
    """Exponential backoff with jitter: each delay is 50-100% of a doubling base."""

    def __init__(self, first: float = 0.1, cap: float = 10.0) -> None:
        self._first, self._cap, self._base = first, cap, first

    def next(self) -> float:
        """The next delay in seconds; doubles the base up to the cap."""
        delay = self._base * random.uniform(0.5, 1.0)
        self._base = min(self._cap, self._base * 2)
        return delay

    def reset(self) -> None:
        """Start again from the first delay (after a success)."""
        self._base = self._first


class ExitSafeResolver(DefaultLoopResolver):
    """Asyncio's resolver, but resolving inline once the interpreter is exiting.

    At exit, executors refuse new work, yet the atexit hook must still connect.
    """

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        try:
            return await super().resolve(host, port, family)
        except RuntimeError:
            return [(info[0], info[4]) for info in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)]


class StoreBusy(Exception):
    """The server answered ``store_unavailable``: reconnect after a backoff and resend."""


class LinkStalled(Exception):
    """The server took frames and acknowledged none for ``_ACK_TIMEOUT`` s: reconnect and resend."""


class LinkClosed(Exception):
    """The websocket closed; ``code`` is the close code the server sent, if any."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"closed with code {code} ({reason or 'no reason'})")
        self.code = code
        self.reason = reason


async def open_websocket(request: HTTPRequest, resolver: DefaultLoopResolver) -> WebSocketClientConnection:
    """Open the producer's websocket (pings every 20 s, Nagle's algorithm off) as ``websocket_connect`` does.

    Tornado leaves Nagle's algorithm on once the handshake is done, so a
    frame written right after another (a flush of scalars, then a
    histogram) would wait for the server's delayed ACK, up to 40 ms.

    Raises what ``websocket_connect`` raises. If the caller is cancelled
    while the handshake runs, the handshake still goes on inside tornado; a
    connection it completes is closed at once instead of being left open with
    no owner (the server would hold it, and its ``__del__`` warns).
    """
    connecting = asyncio.ensure_future(
        websocket_connect(request, ping_interval=20.0, ping_timeout=20.0, resolver=resolver)
    )
    try:
        connection = await asyncio.shield(connecting)
    except asyncio.CancelledError:
        if connecting.done():
            _close_unclaimed(connecting)
        else:
            connecting.add_done_callback(_close_unclaimed)
        raise
    if connection.protocol is not None:
        connection.protocol.set_nodelay(True)
    return connection


def _close_unclaimed(connecting: asyncio.Future[WebSocketClientConnection]) -> None:
    if not connecting.cancelled() and connecting.exception() is None:
        connecting.result().close(1000, "the producer stopped while connecting")


MAX_QUEUED_ITEMS = 200_000
DRAIN_SLICE = 20_000


class Sender:
    """Delivers a run's frames from a background thread; never raises into the caller.

    Thread safety: ``submit`` and ``close`` are called from the training
    thread(s); every other method runs on the sender's own loop thread.
    """

    def __init__(
        self, endpoint: str, token: str | None, hello: Hello, buffer: FrameBuffer, flush_interval: float
    ) -> None:
        """Prepare the sender; nothing runs until ``start``."""
        self.endpoint, self._token, self._hello, self._buffer = endpoint, token, hello, buffer
        self._ledger = Ledger(buffer)
        self._run, self._flush_interval = hello.run, flush_interval
        self._queue: deque[Item] = deque()
        self._discarded = 0
        self._in_hand = 0  # items taken from the queue by the drain under way and not framed yet
        self._abandoned = False  # close stopped waiting while the thread was busy: it frames nothing more
        # Held by the loop while it moves items, adds frames and settles them, and by close when it gives
        # up on a busy thread: the report it takes then counts each call once, as a frame or as unframed.
        self._books = threading.Lock()
        self._asleep = False
        self._closing = False
        self._dead = False
        self._loop = asyncio.new_event_loop()
        self._wake, self._progress, self._stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._settled = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name=f"labscreen-{hello.run}", daemon=True)
        self._ioloop: IOLoop | None = None
        self._final: DeliveryReport | None = None
        self._cursor, self._highest_sent, self._sent = 1, 0, 0
        self._announced_drops = 0
        self._last_announce = -math.inf
        self._closing_announced = False
        self._linked = False
        self._inflight: dict[int, int] = {}
        self._inflight_bytes = 0
        self._backoff = Backoff()
        self._resolver = ExitSafeResolver()
        self._warned: set[str] = set()
        self._down_warned = False  # the current outage was warned of (it ends with an acknowledgement)
        self._back_said = False  # ... and a reconnect during it was told
        self._refused = self._answered = False  # the server refused the connection / completed a handshake
        self._unacked_since: float | None = None  # when the oldest frame sent and not acknowledged went
        self.connected_once = False

    @property
    def never_linked(self) -> str:
        """Why the run never reached a server that took it, for the final report ("" if it did or nothing failed)."""
        if self.connected_once or not self._down_warned:
            return ""
        if self._refused:
            return ", which refused the connection"
        return ", which never welcomed the run" if self._answered else ", which was never reached"

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def submit(self, item: Item) -> None:
        """Queue an item; costs a deque append, plus a loop wake-up only if the loop sleeps.

        Items submitted after the background thread ended (it failed, and
        said so in the log) are discarded.
        """
        if self._dead:
            return
        if len(self._queue) >= MAX_QUEUED_ITEMS:
            self._discard_oldest()
        self._queue.append(item)
        if self._asleep:
            self._asleep = False
            self._call_soon(self._wake.set)

    def _discard_oldest(self) -> None:
        try:
            self._queue.popleft()
        except IndexError:  # the loop drained it meanwhile
            return
        self._discarded += 1
        if self._discarded == 1:
            logger.warning(
                "labscreen: run %s: calls arrive faster than they can be framed (over %d waiting); "
                "the oldest are discarded and counted in the delivery report",
                self._run,
                MAX_QUEUED_ITEMS,
            )

    def close(self, timeout: float) -> DeliveryReport:
        """Wait up to ``timeout`` s for every frame to be settled, then stop the thread.

        Returns within ``timeout`` plus ``_STOP_GRACE`` s. A thread still busy
        then (framing a huge histogram: numpy cannot be interrupted) is left
        to stop at its next step, framing nothing more; the calls it had not
        framed are counted as ``unframed``.

        Returns:
            The delivery report; never raises.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        self._closing = True
        self._call_soon(self._close_requested)
        self._settled.wait(max(0.0, timeout))
        self._call_soon(self._stop.set)
        self._thread.join(max(0.0, deadline - time.monotonic()) + _STOP_GRACE)
        if self._thread.is_alive():
            with self._books:
                self._abandoned = True
                if self._final is None:
                    self._final = self._report(unframed=len(self._queue) + self._in_hand)
            # The thread deletes the spool when it gets to stop; a process that exits first must not leave it.
            atexit.register(self._close_buffer)
        return self._final or self._report()

    def _close_buffer(self) -> None:
        with self._books:
            self._buffer.close()

    def snapshot(self) -> DeliveryReport:
        """Delivery so far (read without locking: each count is current, together only roughly)."""
        return self._final or self._report()

    def _call_soon(self, callback: Callable[[], Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:
            logger.debug("labscreen sender loop already closed")

    def _thread_main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except Exception:
            logger.warning("labscreen: the background sender failed; no more data is sent", exc_info=True)
        finally:
            self._finalize()

    async def _main(self) -> None:
        self._ioloop = IOLoop.current()
        tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._link())]
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in [stop, *tasks]:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("the sender's loop stopped") from task.exception()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finalize(self) -> None:
        self._dead = True
        try:
            while self._queue and not self._abandoned:
                self._drain()
            with self._books:
                if self._final is None:
                    self._final = self._report()
                self._queue.clear()
            self._close_buffer()
            atexit.unregister(self._close_buffer)
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except Exception:
            logger.warning("labscreen: error while stopping the background sender", exc_info=True)
        finally:
            if self._ioloop is not None:
                self._ioloop.close(all_fds=True)
            else:
                self._loop.close()
            self._settled.set()

    def _report(self, unframed: int = 0) -> DeliveryReport:
        return self._ledger.report(self._run, self._sent, self._discarded, unframed)

    def _close_requested(self) -> None:
        self._wake.set()
        self._check_settled()

    def _check_settled(self) -> None:
        if not (self._closing and not self._queue and self._ledger.outstanding == 0):
            return
        # Nothing is held now, so this last announcement cannot push a frame out; made once, and
        # only over a live link (a buffer too small for it drops it, and no server would take it).
        if self._closing_announced or not self._linked:
            self._settled.set()
            return
        self._closing_announced = True
        if not self._announce_drops("because the buffer was full"):
            self._settled.set()

    def _announce_drops(self, reason: str) -> bool:
        """Frame an event saying how many frames were dropped since the last one; False if none were.

        The event goes to the run like any other frame, so the dashboard's
        events strip shows the loss; it is itself a frame, and may push out
        another while the buffer is full: that one is counted in the next
        announcement (at the latest the one made on closing). Framed here on
        the loop, not queued with the caller's items, so it never takes a
        caller's place in the queue nor loses its own there.
        """
        dropped = self._ledger.dropped - self._announced_drops
        if dropped <= 0:
            return False
        self._announced_drops += dropped
        self._last_announce = self._loop.time()
        text = f"labscreen dropped {dropped} frames {reason}"
        self._add(lambda run, seq: Event(run, seq, -1, time.time(), "warning", text), items=0)  # not a call
        self._progress.set()
        return True

    async def _pump(self) -> None:
        last = -math.inf
        while True:
            await self._items()
            delay = self._flush_interval - (self._loop.time() - last)
            if delay > 0 and not self._closing:
                await asyncio.sleep(delay)
            last = self._loop.time()
            self._drain()
            if self._queue:  # more than one slice waits: let acknowledgements and sends run first
                await asyncio.sleep(0)

    async def _items(self) -> None:
        while not self._queue:
            self._asleep = True
            if self._queue:  # an item raced in before the flag was seen
                self._asleep = False
                return
            await self._wake.wait()
            self._wake.clear()

    def _drain(self) -> None:
        scalars: list[ScalarItem] = []
        builders: list[Builder] = []
        with self._books:
            for _ in range(min(len(self._queue), DRAIN_SLICE)):
                item = self._queue.popleft()
                if isinstance(item, ScalarItem):
                    scalars.append(item)
                else:
                    builders.append(item)
                self._in_hand += 1
        for chunk in chunk_scalars(scalars):
            self._add(partial(scalars_message, items=chunk), len(chunk))
        for build in builders:
            if not self._add(build):  # close stopped waiting: nobody reads these frames
                break
        self._progress.set()
        self._check_settled()

    def _add(self, build: Builder, items: int = 1) -> bool:
        """Frame ``items`` calls (taken in hand) with ``build``; False once close gave up, framing nothing."""
        try:
            data: bytes | None = encode(build(self._run, self._ledger.next_seq))
        except Exception as exc:
            data = None
            self._warn_once(f"encode:{type(exc).__name__}", "labscreen: a frame could not be built (%s); skipped", exc)
        with self._books:
            if self._abandoned:
                return False
            self._in_hand = max(0, self._in_hand - items)
            if data is None:
                self._ledger.unbuildable()
            else:
                self._ledger.add(data)
        return True

    async def _link(self) -> None:
        while True:
            try:
                await self._connect_and_serve()
            except Exception as exc:
                self._connection_failed(exc)
            await asyncio.sleep(self._backoff.next())

    async def _connect_and_serve(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        request = HTTPRequest(
            self.endpoint, headers=headers, connect_timeout=_CONNECT_TIMEOUT, request_timeout=_CONNECT_TIMEOUT
        )
        ws = await open_websocket(request, self._resolver)
        self._answered = True
        try:
            await ws.write_message(encode(self._hello), binary=True)
            self._on_welcome(await asyncio.wait_for(self._welcome(ws), _REPLY_TIMEOUT))
            await self._serve(ws)
        finally:
            self._linked = False
            self._unacked_since = None
            ws.close(1000)
            self._untrack(lambda sent: True)

    async def _welcome(self, ws: WebSocketClientConnection) -> Welcome:
        while True:
            reply = await self._read(ws)
            if isinstance(reply, Welcome):
                return reply
            if isinstance(reply, Error):
                self._warn_once(
                    f"error:{reply.code}", "labscreen: the server refused the run (%s: %s)", reply.code, reply.message
                )

    async def _read(self, ws: WebSocketClientConnection) -> Welcome | Ack | Error | None:
        data = await ws.read_message()
        if data is None:
            raise LinkClosed(ws.close_code, ws.close_reason)
        try:
            reply = decode(data if isinstance(data, bytes) else data.encode())
        except ProtocolError as exc:
            self._warn_once("bad_reply", "labscreen: unreadable reply from the server (%s); ignored", exc)
            return None
        return reply if isinstance(reply, (Welcome, Ack, Error)) else None

    async def _serve(self, ws: WebSocketClientConnection) -> None:
        tasks = {
            asyncio.create_task(self._read_loop(ws)),
            asyncio.create_task(self._write_loop(ws)),
            asyncio.create_task(self._watch_acks()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    async def _read_loop(self, ws: WebSocketClientConnection) -> None:
        while True:
            reply = await self._read(ws)
            if isinstance(reply, Ack) and reply.run == self._run:
                self._on_ack(reply.seq)
            elif isinstance(reply, Error):
                self._on_error(reply)

    async def _watch_acks(self) -> None:
        """Raise ``LinkStalled`` when a sent frame has waited ``_ACK_TIMEOUT`` s for its acknowledgement.

        A server that completed the handshake and then stopped answering
        (hung, or a proxy that swallows frames) otherwise held the run's
        frames with no word said until ``finish``.
        """
        interval = min(1.0, _ACK_TIMEOUT / 4)
        while True:
            before = self._loop.time()
            await asyncio.sleep(interval)
            now = self._loop.time()
            since = self._unacked_since
            if since is None:
                continue
            if now - before > 2 * interval:  # this loop was busy (framing): acks may be unread, not unsent
                self._unacked_since = now
            elif now - since > _ACK_TIMEOUT:
                raise LinkStalled(f"no acknowledgement in {_ACK_TIMEOUT:g} s")

    def _restart_ack_clock(self) -> None:
        """The server answered: frames sent and still unsettled wait for their acknowledgement from now."""
        sent_held = max(0, self._cursor - self._buffer.first_seq)
        waiting = sent_held - self._ledger.refused_held > 0
        self._unacked_since = self._loop.time() if waiting else None

    async def _write_loop(self, ws: WebSocketClientConnection) -> None:
        while True:
            seq = await self._next_to_send()
            self._cursor = seq + 1
            data = self._buffer.get(seq)
            if data is None:
                continue
            if seq > self._highest_sent:
                self._highest_sent, self._sent = seq, self._sent + 1
            self._track(seq, len(data))
            if self._unacked_since is None:
                self._unacked_since = self._loop.time()
            # Shielded: cancelling this task (the link closing) must not cancel tornado's own write future,
            # which tornado then failed to resolve with a traceback in the log.
            await asyncio.shield(ws.write_message(data, binary=True))

    async def _next_to_send(self) -> int:
        while True:
            self._cursor = max(self._cursor, self._buffer.first_seq)
            while self._ledger.is_refused(self._cursor):
                self._cursor += 1
            room = self._inflight_bytes < _MAX_INFLIGHT_BYTES or not self._inflight
            if self._cursor <= self._buffer.last_seq and room:
                return self._cursor
            self._progress.clear()
            await self._progress.wait()

    def _track(self, seq: int, size: int) -> None:
        self._inflight_bytes += size - self._inflight.get(seq, 0)
        self._inflight[seq] = size

    def _untrack(self, match: Callable[[int], bool]) -> None:
        for seq in [s for s in self._inflight if match(s)]:
            self._inflight_bytes -= self._inflight.pop(seq)

    def _on_welcome(self, welcome: Welcome) -> None:
        with self._books:
            self._ledger.acknowledge(welcome.last_seq)
        self._cursor = max(welcome.last_seq + 1, self._buffer.first_seq)
        self.connected_once = self._linked = True
        if self._down_warned and not self._back_said:
            logger.info("labscreen: connected to %s; resending %d frames", self.endpoint, len(self._buffer))
            self._back_said = True
        if not len(self._buffer):  # nothing to resend: the outage is over (else the first acknowledgement says so)
            self._outage_over()
        self._announce_drops("while the server was unreachable")

    def _outage_over(self) -> None:
        """The link works again: the next outage is warned of again.

        Not at a welcome alone: a server that welcomes the run and then
        acknowledges nothing is left every ``_ACK_TIMEOUT`` s, and warned of
        each time, every 30 s for as long as it hung.
        """
        self._down_warned = self._back_said = False

    def _on_ack(self, seq: int) -> None:
        self._backoff.reset()
        if self._down_warned:
            self._outage_over()
        with self._books:
            self._ledger.acknowledge(seq)
        self._restart_ack_clock()
        while self._inflight and next(iter(self._inflight)) <= seq:
            # keys are in ascending order: sends go in seq order and a reconnect clears them
            self._inflight_bytes -= self._inflight.pop(next(iter(self._inflight)))
        self._progress.set()
        if self._loop.time() - self._last_announce >= DROP_ANNOUNCE_INTERVAL:
            self._announce_drops("because the buffer was full")
        self._check_settled()

    def _on_error(self, error: Error) -> None:
        """Settle a refused frame; ``store_unavailable`` instead ends the session to resend later.

        Raises:
            StoreBusy: the server cannot store now; the link backs off, and the
                next welcome says which frames to resend.
        """
        seq = error.seq
        if error.code == "store_unavailable":
            self._warn_once("store_unavailable", "labscreen: the server cannot store data now (%s)", error.message)
            raise StoreBusy(error.message)
        self._warn_once(
            f"error:{error.code}", "labscreen: the server refused a frame (%s: %s)", error.code, error.message
        )
        with self._books:
            refused = self._ledger.refuse(seq)
        self._restart_ack_clock()  # an answer, as an acknowledgement is
        if refused:
            self._untrack(lambda sent: sent == seq)
            self._check_settled()

    def _connection_failed(self, exc: Exception) -> None:
        if isinstance(exc, HTTPClientError) and exc.code != 599:  # 599: tornado's own (timeout, no connection)
            self._answered = True
        if isinstance(exc, LinkClosed) and exc.code is not None and 4000 <= exc.code <= 4999:
            self._refused = exc.code != _CLOSE_STORE_UNAVAILABLE  # the server's store is down, not this run refused
            self._warn_once(
                f"close:{exc.code}",
                "labscreen: the server at %s refused the connection (close code %d: %s); retrying",
                self.endpoint,
                exc.code,
                exc.reason or "no reason",
            )
        elif isinstance(exc, HTTPClientError) and exc.code in (401, 403):
            self._refused = True
            self._warn_once(
                f"http:{exc.code}", "labscreen: the server at %s refused the token (%s); retrying", self.endpoint, exc
            )
        elif isinstance(exc, StoreBusy):
            logger.debug("labscreen: backing off while the server's store is unavailable")
        elif not self._down_warned:
            logger.warning(
                "labscreen: cannot %s the monitor server at %s (%s); training continues and frames are kept "
                "(up to %d bytes in memory, %d spooled) until it is back",
                "stay connected to" if self.connected_once else "reach",
                self.endpoint,
                _describe(exc),
                self._buffer.max_memory_bytes,
                self._buffer.max_spool_bytes,
            )
        else:
            logger.debug("labscreen: connection to %s failed: %s", self.endpoint, _describe(exc))
        self._down_warned = True

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key in self._warned:
            logger.debug(message, *args)
        else:
            self._warned.add(key)
            logger.warning(message, *args)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
