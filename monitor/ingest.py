"""Websocket ingest: producers' frames in, acks and errors out.

``IngestService`` holds what all ingest connections share (store, hub,
metrics, the map from stream to connection that routes acks). ``IngestSocket``
is the ``/ws/ingest`` handler: it parses, hands off and answers; it never
touches disk and never lets an exception escape to Tornado. A bad frame is
answered with an ``error`` frame and dropped; the connection carries on. An
oversized message closes the socket with code 4009.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from monitor.config import ServerConfig
from monitor.hub import Hub
from monitor.metrics import Metrics
from monitor.store.base import RunStore, StoreUnavailable
from monitor.wire import (
    MAX_MESSAGE_BYTES,
    Ack,
    DataMessage,
    Error,
    Hello,
    Histogram,
    Message,
    Predictions,
    ProtocolError,
    Scalars,
    Welcome,
    decode,
    encode,
)

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4001
CLOSE_TOO_LARGE = 4009
CLOSE_TOO_MANY = 4029
CLOSE_STORE_UNAVAILABLE = 4503


class AckTarget(Protocol):
    """Something that can be told a stream's frames are durable."""

    def send_ack(self, run: str, seq: int) -> None: ...


class TokenBucket:
    """Frames-per-second limiter; ``delay`` says how long to wait before the next frame."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(rate, 1.0)
        self._tokens = self.capacity
        self._stamp = time.monotonic()

    def delay(self) -> float:
        """Take one token; return seconds to wait first (0 when one was free)."""
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


def token_matches(expected: str | None, authorization: str | None) -> bool:
    """Whether an ``Authorization: Bearer`` header carries the expected token.

    Compared in constant time. With no expected token everything matches.
    """
    if expected is None:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected.encode())


class IngestService:
    """Shared ingest state: accepts frames into the store and hub, routes acks.

    Thread safety: everything runs on the event loop except ``on_commit``,
    which the store calls from its writer thread and which only schedules.
    """

    def __init__(self, config: ServerConfig, store: RunStore, hub: Hub, metrics: Metrics, loop: IOLoop) -> None:
        self.config = config
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.loop = loop
        self.connections: set[AckTarget] = set()
        self._ack_routes: dict[tuple[str, str], AckTarget] = {}
        self._series: dict[str, set[str]] = {}

    def on_commit(self, run: str, stream: str, seq: int) -> None:
        """Store callback (writer thread): schedule the ack on the loop."""
        self.loop.add_callback(self._ack, run, stream, seq)

    def _ack(self, run: str, stream: str, seq: int) -> None:
        target = self._ack_routes.get((run, stream))
        if target is not None:
            target.send_ack(run, seq)

    def open(self, hello: Hello, target: AckTarget) -> Welcome:
        """Register a run's stream for ``target``; the welcome names its last durable seq.

        Raises:
            StoreUnavailable: the store is refusing writes.
        """
        last = self.store.open_stream(hello)
        self._ack_routes[(hello.run, hello.stream)] = target
        self.hub.publish(hello)
        self.metrics.frames["hello"] += 1
        return Welcome(run=hello.run, stream=hello.stream, last_seq=last)

    def accept(self, stream: str, message: DataMessage) -> Ack | None:
        """Hand one data frame to the store and, if new, to the hub.

        Returns:
            ``None`` for a new frame (its ack follows the commit), or an
            ``Ack`` of what is already durable when the frame was a resend.

        Raises:
            StoreUnavailable: the store is refusing writes; nothing was taken.
        """
        self._check_series(message)
        if not self.store.submit(stream, message):
            self.metrics.duplicates += 1
            committed = self.store.committed_seq(message.run, stream)
            return Ack(run=message.run, seq=committed) if committed else None
        self.metrics.frames[message.kind] += 1
        if isinstance(message, Scalars):
            self.metrics.points_stored += len(message.values)
            self.metrics.nonfinite_values += message.nonfinite
        self.hub.publish(message)
        return None

    def _check_series(self, message: DataMessage) -> None:
        if isinstance(message, Scalars):
            names: tuple[str, ...] = message.names
        elif isinstance(message, (Histogram, Predictions)):
            names = (f"{message.kind}:{message.name}",)
        else:
            return
        known = self._series.setdefault(message.run, set())
        new = [name for name in names if name not in known]
        limit = self.config.max_series_per_run
        if len(known) + len(new) > limit:
            raise ProtocolError(
                "limit_exceeded",
                f"run {message.run!r} would have more than max_series_per_run={limit} series; "
                f"{len(new)} new names refused ({new[0]!r}, ...)",
                run=message.run,
                seq=message.seq,
            )
        known.update(new)

    def release(self, target: AckTarget) -> None:
        """Forget ``target``'s ack routes (its connection closed)."""
        self.connections.discard(target)
        for key in [k for k, v in self._ack_routes.items() if v is target]:
            del self._ack_routes[key]


class IngestSocket(WebSocketHandler):
    """``/ws/ingest``: one producer connection carrying one or more runs."""

    def initialize(self, service: IngestService) -> None:
        self.service = service
        self.streams: dict[str, str] = {}
        self.last_seq: dict[str, int] = {}
        self.bucket = TokenBucket(service.config.max_frames_per_second)
        self.refusing = False

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Check the token and the connection limit before upgrading."""
        service = self.service
        if not token_matches(service.config.token, self.request.headers.get("Authorization")):
            service.metrics.errors["unauthorized"] += 1
            log.warning("refused producer from %s: missing or wrong token", self.request.remote_ip)
            self.set_status(401)
            self.finish({"error": "missing or wrong token: send 'Authorization: Bearer <token>'"})
            return
        if len(service.connections) >= service.config.max_producers:
            service.metrics.errors["limit_exceeded"] += 1
            self.set_status(503)
            self.finish({"error": f"too many producer connections (limit {service.config.max_producers})"})
            return
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        # Producers are programs, not pages; the token (when set) is the gate.
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.service.connections.add(self)

    def on_close(self) -> None:
        self.service.release(self)

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Handle one frame; any failure becomes an ``error`` frame, never an exception.

        Over the frame-rate limit, returns a coroutine that waits first: Tornado
        reads the next frame only after it completes, so the limit is
        back-pressure on the producer's socket, never a dropped frame.
        """
        if self.refusing:
            return None
        wait = self.bucket.delay()
        if wait > 0:
            return self._later(message, wait)
        self._guarded(message)
        return None

    async def _later(self, message: str | bytes, wait: float) -> None:
        await asyncio.sleep(wait)
        if not self.refusing:
            self._guarded(message)

    def _guarded(self, message: str | bytes) -> None:
        try:
            self._handle(message)
        except ProtocolError as exc:
            self._refuse(exc)
        except StoreUnavailable as exc:
            self._store_unavailable(exc)
        except Exception:
            log.exception("ingest failed on a frame; answered with an internal error")
            self._refuse(ProtocolError("internal", "the server failed on this frame; see its log"))

    def _handle(self, message: str | bytes) -> None:
        if isinstance(message, str):
            raise ProtocolError("bad_frame", "text frames are not accepted; send binary frames (monitor.wire.encode)")
        if len(message) > MAX_MESSAGE_BYTES:
            self._close_too_large(len(message))
            return
        self._dispatch(decode(message))

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Hello):
            self._hello(message)
        elif isinstance(message, (Welcome, Ack, Error)):
            raise ProtocolError("unknown_kind", f"{message.kind!r} is sent by the server, not to it")
        else:
            self._data(message)

    def _hello(self, hello: Hello) -> None:
        if hello.run not in self.streams and len(self.streams) >= self.service.config.max_runs_per_connection:
            limit = self.service.config.max_runs_per_connection
            raise ProtocolError("limit_exceeded", f"this connection already carries {limit} runs", run=hello.run)
        welcome = self.service.open(hello, self)
        self.streams[hello.run] = hello.stream
        self.last_seq[hello.run] = welcome.last_seq
        self._send(welcome)

    def _data(self, message: DataMessage) -> None:
        stream = self.streams.get(message.run)
        if stream is None:
            raise ProtocolError(
                "unknown_run",
                f"run {message.run!r} has no hello on this connection; send hello first",
                run=message.run,
                seq=message.seq,
            )
        last = self.last_seq[message.run]
        if message.seq <= last:
            raise ProtocolError(
                "seq_backwards",
                f"seq {message.seq} after {last} on this connection; seq must increase",
                run=message.run,
                seq=message.seq,
            )
        ack = self.service.accept(stream, message)
        self.last_seq[message.run] = message.seq
        if ack is not None:
            self._send(ack)

    def send_ack(self, run: str, seq: int) -> None:
        self._send(Ack(run=run, seq=seq))

    def _refuse(self, exc: ProtocolError) -> None:
        self.service.metrics.errors[exc.code] += 1
        log.info("refused frame run=%s seq=%s: %s", exc.run, exc.seq, exc)
        self._send(Error(run=exc.run, seq=exc.seq or 0, code=exc.code, message=exc.message))

    def _store_unavailable(self, exc: StoreUnavailable) -> None:
        # Later frames of this connection must not overtake the refused one, so stop reading and
        # close: the producer reconnects, hears the durable seq in the welcome and resends in order.
        self.refusing = True
        self.service.metrics.errors["store_unavailable"] += 1
        self._send(Error(run=None, seq=0, code="store_unavailable", message=f"store is not accepting writes: {exc}"))
        self.close(CLOSE_STORE_UNAVAILABLE, "store unavailable; reconnect later")

    def _close_too_large(self, size: int) -> None:
        self.refusing = True
        self.service.metrics.errors["too_large"] += 1
        log.warning("closing producer %s: %d-byte message over %d", self.request.remote_ip, size, MAX_MESSAGE_BYTES)
        self.close(CLOSE_TOO_LARGE, f"message of {size} bytes exceeds {MAX_MESSAGE_BYTES}")

    def _send(self, message: Message) -> None:
        try:
            self.write_message(encode(message), binary=True)
        except WebSocketClosedError:
            log.debug("producer connection closed before %s could be sent", message.kind)


__all__ = ["IngestService", "IngestSocket", "TokenBucket", "token_matches"]
