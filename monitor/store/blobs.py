"""Numpy arrays as SQLite column triples: raw bytes, dtype and shape.

An array is stored as its C-order bytes in a BLOB, its dtype string (such as
``<f8``) and its shape as comma-separated integers (``""`` for a 0-d array).
Absent optional arrays are three NULLs. Arrays read back are read-only views
of the fetched bytes, bit-for-bit equal to what was written.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
_BUFFER_KINDS = frozenset("biufc")
"""Dtype kinds whose memory is their value (not object pointers), safe to bind as a buffer."""
Blob = tuple[bytes | Array | None, str | None, str | None]
"""The bytes (or a C-contiguous array, which ``sqlite3`` binds as a BLOB through the buffer protocol), dtype, shape."""


def to_blob(array: Array | None) -> Blob:
    """The (bytes, dtype, shape) triple of ``array``; three NULLs for ``None``.

    The dtype is kept as it is (a float32 array is stored as float32). A
    C-contiguous array is returned itself instead of a copy of its bytes:
    ``sqlite3`` binds any buffer as a BLOB, reading the memory once.
    """
    if array is None:
        return None, None, None
    array = np.asarray(array)
    data = array if array.flags.c_contiguous and array.dtype.kind in _BUFFER_KINDS else array.tobytes(order="C")
    return data, array.dtype.str, ",".join(str(n) for n in array.shape)


def from_blob(data: bytes | None, dtype: str | None, shape: str | None) -> Array | None:
    """The array stored as (bytes, dtype, shape); ``None`` for three NULLs.

    Raises:
        ValueError: the bytes do not fit the dtype and shape (a corrupt row).
    """
    if data is None or dtype is None or shape is None:
        return None
    dims = tuple(int(n) for n in shape.split(",")) if shape else ()
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(dims)


def required_blob(data: bytes | None, dtype: str | None, shape: str | None) -> Array:
    """Like ``from_blob`` for a column that is never NULL.

    Raises:
        ValueError: the column is NULL or does not fit its dtype and shape.
    """
    array = from_blob(data, dtype, shape)
    if array is None:
        raise ValueError("a required array column is NULL")
    return array


def to_names(names: tuple[str, ...]) -> str:
    """A tuple of names as a JSON text column."""
    return json.dumps(list(names))


def from_names(text: str) -> tuple[str, ...]:
    """A JSON text column of names as a tuple."""
    return tuple(json.loads(text))
