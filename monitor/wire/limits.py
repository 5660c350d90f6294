"""Explicit limits of the wire protocol, shared by server and producer.

Every limit is a named constant so that an error message can quote it and a
producer can check its own frames before they leave the process.
"""

from __future__ import annotations

import numpy as np

PROTOCOL_VERSION = 1
"""Version a producer states in ``hello``; the server refuses any other."""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest binary websocket message accepted, header and buffers together."""

MAX_HEADER_BYTES = 1024 * 1024
"""Largest JSON header inside one message."""

MAX_ARRAY_ELEMENTS = 2_000_000
"""Most elements in any one array of a message."""

MAX_ARRAYS = 32
"""Most arrays in one message."""

MAX_NAME_LENGTH = 200
"""Longest run id, series name, class name or layer name."""

MAX_TEXT_LENGTH = 10_000
"""Longest event text."""

MAX_NAMES = 10_000
"""Most names in one list (series names, classes, graph nodes or edges)."""

MAX_JSON_DEPTH = 8
"""Deepest nesting accepted inside a run's config."""

ALLOWED_DTYPES: frozenset[np.dtype[np.generic]] = frozenset(
    np.dtype(name)
    for name in (
        "<f2",
        "<f4",
        "<f8",
        "i1",
        "<i2",
        "<i4",
        "<i8",
        "u1",
        "<u2",
        "<u4",
        "<u8",
        "?",
    )
)
"""Dtypes an array may travel as: little-endian floats, ints and bool."""
