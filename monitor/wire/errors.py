"""Protocol errors: the one exception type a bad frame raises, and its codes.

A ``ProtocolError`` carries a machine-readable ``code`` (one of
``ErrorCode``), a human message that names the bad field and value, and the
run and seq of the offending frame when the header was readable, so that the
server can answer with an ``error`` frame the producer can match.
"""

from __future__ import annotations

from typing import Literal, get_args

ErrorCode = Literal[
    "bad_frame",
    "bad_header",
    "unknown_kind",
    "missing_field",
    "bad_field",
    "bad_dtype",
    "bad_shape",
    "too_many_elements",
    "too_large",
    "name_too_long",
    "bad_version",
    "unknown_run",
    "seq_backwards",
    "unauthorized",
    "rate_limited",
    "limit_exceeded",
    "store_unavailable",
    "internal",
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)


class ProtocolError(ValueError):
    """A frame that cannot be accepted; the connection itself stays usable.

    Attributes:
        code: Machine-readable reason, one of ``ERROR_CODES``.
        message: What was wrong, naming the field and value, and the fix.
        run: Run id of the offending frame, if the header could be read.
        seq: Sequence number of the offending frame, if it could be read.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        run: str | None = None,
        seq: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message
        self.run = run
        self.seq = seq
