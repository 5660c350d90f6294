"""The binary frame layout: a JSON header followed by raw array buffers.

One websocket message is::

    uint32 little-endian  header length H
    H bytes               UTF-8 JSON object: {"kind", "run", "seq", "fields",
                          "arrays": [{"name", "dtype", "shape", "offset",
                          "nbytes"}, ...]}
    remaining bytes       the arrays' raw little-endian buffers; each array's
                          offset is counted from the first byte after the
                          header

This module packs and unpacks that layout and checks every declared array
against the limits; it knows nothing of message kinds (see ``messages``).
Arrays are read with ``numpy.frombuffer`` and never pass through JSON.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from monitor.wire.errors import ProtocolError
from monitor.wire.limits import (
    ALLOWED_DTYPES,
    MAX_ARRAY_ELEMENTS,
    MAX_ARRAYS,
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
)

_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class RawFrame:
    """A frame split into its parts, before its kind is interpreted.

    Attributes:
        kind: The ``kind`` string from the header, not yet checked.
        run: Run id, or ``None`` for server-to-producer frames without one.
        seq: Sequence number (0 where the kind has none).
        fields: The header's ``fields`` object.
        arrays: Decoded arrays by name; read-only views into the message.
    """

    kind: str
    run: str | None
    seq: int
    fields: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray[Any, Any]]


def pack(
    kind: str,
    run: str | None,
    seq: int,
    fields: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray[Any, Any]] | None = None,
) -> bytes:
    """Encode one frame.

    Args:
        kind: Message kind.
        run: Run id, or ``None``.
        seq: Sequence number.
        fields: JSON-serialisable scalar fields (``allow_nan`` is off: callers
            put non-finite numbers into arrays, never into fields).
        arrays: Arrays to append as raw little-endian buffers.

    Returns:
        The message bytes.

    Raises:
        ProtocolError: ``bad_dtype`` for an array whose dtype is not allowed,
            ``too_many_elements`` or ``too_large`` when a limit is exceeded,
            ``bad_field`` when a field is not JSON-serialisable.
    """
    descriptors: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    offset = 0
    for name, array in (arrays or {}).items():
        data = _checked_for_pack(name, array, run, seq)
        descriptors.append(
            {
                "name": name,
                "dtype": data.dtype.str,
                "shape": list(data.shape),
                "offset": offset,
                "nbytes": data.nbytes,
            }
        )
        buffers.append(data.tobytes())
        offset += data.nbytes
    header = {"kind": kind, "run": run, "seq": seq, "fields": dict(fields), "arrays": descriptors}
    try:
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError("bad_field", f"fields of {kind!r} are not JSON: {exc}", run=run, seq=seq) from exc
    message = b"".join([_LENGTH.pack(len(head)), head, *buffers])
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "too_large",
            f"{kind!r} frame is {len(message)} bytes, over MAX_MESSAGE_BYTES={MAX_MESSAGE_BYTES}; send smaller frames",
            run=run,
            seq=seq,
        )
    return message


def _checked_for_pack(name: str, array: np.ndarray[Any, Any], run: str | None, seq: int) -> np.ndarray[Any, Any]:
    data = np.ascontiguousarray(array)
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))
    if data.dtype not in ALLOWED_DTYPES:
        raise ProtocolError(
            "bad_dtype", f"array {name!r} has dtype {data.dtype}, not one of the allowed dtypes", run=run, seq=seq
        )
    if data.size > MAX_ARRAY_ELEMENTS:
        raise ProtocolError(
            "too_many_elements",
            f"array {name!r} has {data.size} elements, over MAX_ARRAY_ELEMENTS={MAX_ARRAY_ELEMENTS}",
            run=run,
            seq=seq,
        )
    return data


def unpack(message: bytes) -> RawFrame:
    """Split a message into header and arrays, checking every limit.

    Args:
        message: One binary websocket message.

    Returns:
        The frame with its arrays as read-only numpy views.

    Raises:
        ProtocolError: ``too_large``, ``bad_frame`` (truncated or
            inconsistent layout), ``bad_header`` (not a JSON object, bad
            ``kind``/``run``/``seq``), ``bad_dtype``, ``bad_shape`` or
            ``too_many_elements`` for a bad array descriptor.
    """
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message is {len(message)} bytes, over MAX_MESSAGE_BYTES={MAX_MESSAGE_BYTES}")
    if len(message) < _LENGTH.size:
        raise ProtocolError("bad_frame", f"message is {len(message)} bytes, too short for the 4-byte header length")
    (head_len,) = _LENGTH.unpack_from(message)
    if head_len > MAX_HEADER_BYTES or _LENGTH.size + head_len > len(message):
        raise ProtocolError(
            "bad_frame",
            f"header length {head_len} does not fit a {len(message)}-byte message (limit {MAX_HEADER_BYTES})",
        )
    header = _parse_header(bytes(message[_LENGTH.size : _LENGTH.size + head_len]))
    kind, run, seq = _envelope(header)
    fields = header.get("fields", {})
    if not isinstance(fields, dict):
        raise ProtocolError("bad_header", f"'fields' must be an object, got {type(fields).__name__}", run=run, seq=seq)
    body = memoryview(message)[_LENGTH.size + head_len :]
    arrays = _read_arrays(header.get("arrays", []), body, run, seq)
    return RawFrame(kind=kind, run=run, seq=seq, fields=fields, arrays=arrays)


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_header", f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("bad_header", f"header must be a JSON object, got {type(header).__name__}")
    return header


def _envelope(header: dict[str, Any]) -> tuple[str, str | None, int]:
    kind = header.get("kind")
    run = header.get("run")
    seq = header.get("seq", 0)
    if run is not None and not isinstance(run, str):
        raise ProtocolError("bad_header", f"'run' must be a string, got {run!r:.80}")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        raise ProtocolError("bad_header", f"'seq' must be an integer in [0, 2**63), got {seq!r:.80}", run=run)
    if not isinstance(kind, str):
        raise ProtocolError("bad_header", f"'kind' must be a string, got {kind!r:.80}", run=run, seq=seq)
    return kind, run, seq


def _read_arrays(descriptors: Any, body: memoryview, run: str | None, seq: int) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(descriptors, list) or len(descriptors) > MAX_ARRAYS:
        raise ProtocolError(
            "bad_header", f"'arrays' must be a list of at most {MAX_ARRAYS} descriptors", run=run, seq=seq
        )
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for desc in descriptors:
        name, array = _read_array(desc, body, run, seq)
        if name in arrays:
            raise ProtocolError("bad_header", f"array {name!r} is declared twice", run=run, seq=seq)
        arrays[name] = array
    return arrays


def _read_array(desc: Any, body: memoryview, run: str | None, seq: int) -> tuple[str, np.ndarray[Any, Any]]:
    if not isinstance(desc, dict):
        raise ProtocolError("bad_header", f"array descriptor must be an object, got {desc!r:.80}", run=run, seq=seq)
    name = desc.get("name")
    if not isinstance(name, str):
        raise ProtocolError("bad_header", f"array descriptor needs a string 'name', got {name!r:.80}", run=run, seq=seq)
    dtype = _dtype(name, desc.get("dtype"), run, seq)
    shape, count = _shape(name, desc.get("shape"), run, seq)
    offset, nbytes = desc.get("offset"), desc.get("nbytes")
    if not _is_count(offset) or not _is_count(nbytes) or offset + nbytes > len(body):
        raise ProtocolError(
            "bad_frame",
            f"array {name!r} declares bytes [{offset!r:.20}, +{nbytes!r:.20}) beyond the {len(body)}-byte payload",
            run=run,
            seq=seq,
        )
    if count * dtype.itemsize != nbytes:
        raise ProtocolError(
            "bad_shape",
            f"array {name!r}: shape {list(shape)} of {dtype} needs {count * dtype.itemsize} bytes, "
            f"frame declares {nbytes}",
            run=run,
            seq=seq,
        )
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape)
    return name, array


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_BY_NAME: dict[str, np.dtype[Any]] = {dtype.str: dtype for dtype in ALLOWED_DTYPES}
"""The encoder's own spellings (``dtype.str``), looked up without parsing."""


def _dtype(name: str, spec: Any, run: str | None, seq: int) -> np.dtype[Any]:
    dtype = _BY_NAME.get(spec) if isinstance(spec, str) else None
    if dtype is None and isinstance(spec, str):
        try:
            dtype = np.dtype(spec)
        except TypeError:
            dtype = None
    if dtype is None or dtype not in ALLOWED_DTYPES:
        raise ProtocolError(
            "bad_dtype",
            f"array {name!r} has dtype {spec!r:.40}; allowed: little-endian float16/32/64, int8..64, uint8..64, bool",
            run=run,
            seq=seq,
        )
    return dtype


def _shape(name: str, spec: Any, run: str | None, seq: int) -> tuple[tuple[int, ...], int]:
    if not isinstance(spec, list) or len(spec) > 4 or not all(_is_count(d) for d in spec):
        raise ProtocolError(
            "bad_shape", f"array {name!r} has shape {spec!r:.60}; need a list of at most 4 sizes", run=run, seq=seq
        )
    count = 1
    for size in spec:
        count *= size
    if count > MAX_ARRAY_ELEMENTS:
        raise ProtocolError(
            "too_many_elements",
            f"array {name!r} declares {count} elements, over MAX_ARRAY_ELEMENTS={MAX_ARRAY_ELEMENTS}",
            run=run,
            seq=seq,
        )
    return tuple(spec), count
