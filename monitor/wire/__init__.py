"""The labscreen wire protocol, shared by the server and the producer.

``encode`` turns a typed message into one binary websocket message and
``decode`` turns one back, validated against the limits in ``limits``. Any
bad input raises ``ProtocolError``; nothing else escapes ``decode``.
"""

from __future__ import annotations

from typing import Any

from monitor.wire.errors import ERROR_CODES, ErrorCode, ProtocolError
from monitor.wire.fields import RUN_ID_PATTERN, FieldReader
from monitor.wire.frame import RawFrame, pack, unpack
from monitor.wire.limits import (
    ALLOWED_DTYPES,
    MAX_ARRAY_ELEMENTS,
    MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    PROTOCOL_VERSION,
)
from monitor.wire.messages import (
    Ack,
    DataMessage,
    DataSummary,
    Error,
    Event,
    EventLevel,
    Finish,
    FinishStatus,
    Graph,
    GraphNode,
    Hello,
    Histogram,
    Message,
    Predictions,
    ProducerMessage,
    Scalars,
    ServerMessage,
    Task,
    Welcome,
)

_KINDS: dict[str, Any] = {
    cls.kind: cls
    for cls in (Hello, Scalars, Histogram, Predictions, Graph, DataSummary, Event, Finish, Welcome, Ack, Error)
}


def encode(message: Message) -> bytes:
    """Encode a message as one binary websocket message.

    Raises:
        ProtocolError: an array has a disallowed dtype or exceeds a limit, or
            the encoded message is over ``MAX_MESSAGE_BYTES``.
    """
    return pack(message.kind, message.run, message.seq, message.wire_fields(), message.wire_arrays())


def decode(data: bytes) -> Message:
    """Decode and validate one binary websocket message.

    Raises:
        ProtocolError: for anything wrong with the message; its ``code``,
            ``run`` and ``seq`` say what and where, as far as known.
    """
    raw = unpack(data)
    cls = _KINDS.get(raw.kind)
    if cls is None:
        raise ProtocolError(
            "unknown_kind", f"kind {raw.kind!r:.40} is not one of {sorted(_KINDS)}", run=raw.run, seq=raw.seq
        )
    try:
        message: Message = cls.read(FieldReader(raw))
    except ProtocolError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProtocolError("bad_field", f"{raw.kind}: {exc}", run=raw.run, seq=raw.seq) from exc
    return message


__all__ = [
    "ALLOWED_DTYPES",
    "ERROR_CODES",
    "MAX_ARRAY_ELEMENTS",
    "MAX_MESSAGE_BYTES",
    "MAX_NAME_LENGTH",
    "PROTOCOL_VERSION",
    "RUN_ID_PATTERN",
    "Ack",
    "DataMessage",
    "DataSummary",
    "Error",
    "ErrorCode",
    "Event",
    "EventLevel",
    "Finish",
    "FinishStatus",
    "Graph",
    "GraphNode",
    "Hello",
    "Histogram",
    "Message",
    "Predictions",
    "ProducerMessage",
    "ProtocolError",
    "RawFrame",
    "Scalars",
    "ServerMessage",
    "Task",
    "Welcome",
    "decode",
    "encode",
    "pack",
    "unpack",
]
