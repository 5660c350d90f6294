"""Typed, validated reads of one frame's fields and arrays.

``FieldReader`` wraps a ``RawFrame`` and turns each expected field or array
into a checked Python or numpy value, raising ``ProtocolError`` with a message
that names the frame kind, the field and the bad value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from monitor.wire.errors import ProtocolError
from monitor.wire.frame import RawFrame
from monitor.wire.limits import MAX_JSON_DEPTH, MAX_NAME_LENGTH, MAX_NAMES

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")  # \Z: "$" also matches before a final newline
"""Run ids appear in URLs, so they are restricted to a safe alphabet."""

ArrayKind = Literal["int", "float", "real", "bool", "number"]
"""``float`` is widened to float64; ``real`` keeps a sent float16/32/64 and widens only integers."""
_KINDS: dict[str, str] = {"int": "iu", "float": "fiu", "real": "fiu", "bool": "b", "number": "fiub"}
_CANONICAL: dict[str, Any] = {"int": np.int64, "float": np.float64, "bool": np.bool_}
_MISSING = object()
T = TypeVar("T")


class FieldReader:
    """Checked accessors over one raw frame; every failure is a ``ProtocolError``."""

    def __init__(self, raw: RawFrame) -> None:
        self.raw = raw

    def fail(self, code: Any, message: str) -> ProtocolError:
        """Build an error for this frame, naming its kind."""
        return ProtocolError(code, f"{self.raw.kind}: {message}", run=self.raw.run, seq=self.raw.seq)

    def run_id(self) -> str:
        """The frame's run id, which every producer frame must carry."""
        run = self.raw.run
        if run is None:
            raise self.fail("missing_field", "'run' is required")
        if not RUN_ID_PATTERN.match(run):
            raise self.fail("bad_field", f"run id {run!r:.80} must be 1-200 of [A-Za-z0-9._-], starting alphanumeric")
        return run

    def _get(self, key: str, default: Any) -> Any:
        value = self.raw.fields.get(key, default)
        if value is _MISSING:
            raise self.fail("missing_field", f"field {key!r} is required")
        return value

    def string(self, key: str, default: Any = _MISSING, *, limit: int = MAX_NAME_LENGTH, empty: bool = True) -> str:
        """A string field of at most ``limit`` characters."""
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.fail("bad_field", f"{key!r} must be a string, got {value!r:.80}")
        if len(value) > limit:
            raise self.fail("name_too_long", f"{key!r} is {len(value)} characters, over the limit of {limit}")
        if not empty and not value:
            raise self.fail("bad_field", f"{key!r} must not be empty")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, low: int = -(2**63), high: int = 2**63 - 1) -> int:
        """An integer field within [low, high]."""
        value = self._get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail("bad_field", f"{key!r} must be an integer in [{low}, {high}], got {value!r:.80}")
        return value

    def number(self, key: str, default: Any = _MISSING) -> float:
        """A finite number field."""
        value = self._get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            raise self.fail("bad_field", f"{key!r} must be a number, got {value!r:.80}")
        return float(value)

    def choice(self, key: str, options: Sequence[T], default: Any = _MISSING) -> T:
        """A field whose value must be one of ``options``."""
        value = self._get(key, default)
        if value not in options:
            raise self.fail("bad_field", f"{key!r} must be one of {list(options)}, got {value!r:.80}")
        return value  # type: ignore[no-any-return]

    def names(self, key: str, default: Any = _MISSING, *, limit: int = MAX_NAMES) -> tuple[str, ...]:
        """A list of non-empty names, each within ``MAX_NAME_LENGTH``."""
        value = self._get(key, default)
        if not isinstance(value, list) or len(value) > limit:
            raise self.fail("bad_field", f"{key!r} must be a list of at most {limit} names, got {value!r:.80}")
        for item in value:
            if not isinstance(item, str) or not item:
                raise self.fail("bad_field", f"{key!r} must hold non-empty strings, got {item!r:.80}")
            if len(item) > MAX_NAME_LENGTH:
                raise self.fail("name_too_long", f"a name in {key!r} is {len(item)} characters, over {MAX_NAME_LENGTH}")
        return tuple(value)

    def json_object(self, key: str) -> dict[str, Any]:
        """A JSON object field (a run's config), nested at most ``MAX_JSON_DEPTH``."""
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self.fail("bad_field", f"{key!r} must be an object, got {value!r:.80}")
        if _depth(value) > MAX_JSON_DEPTH:
            raise self.fail("bad_field", f"{key!r} is nested deeper than {MAX_JSON_DEPTH} levels")
        return value

    def array(
        self, key: str, kind: ArrayKind, ndim: Sequence[int], *, optional: bool = False
    ) -> np.ndarray[Any, Any] | None:
        """An array of the given kind and rank, cast to its canonical dtype.

        Integer arrays become int64, float arrays float64, bool arrays bool;
        ``number`` keeps the sent dtype. Returns ``None`` only when
        ``optional`` and absent.
        """
        array = self.raw.arrays.get(key)
        if array is None:
            if optional:
                return None
            raise self.fail("missing_field", f"array {key!r} is required")
        if array.dtype.kind not in _KINDS[kind]:
            raise self.fail("bad_dtype", f"array {key!r} must be {kind}, got dtype {array.dtype}")
        if array.ndim not in ndim:
            raise self.fail(
                "bad_shape",
                f"array {key!r} must have {' or '.join(map(str, ndim))} dimensions, got shape {list(array.shape)}",
            )
        if kind == "real" and array.dtype.kind == "f":
            return array
        canonical = _CANONICAL.get("float" if kind == "real" else kind)
        return array.astype(canonical, copy=False) if canonical is not None else array

    def required(self, key: str, kind: ArrayKind, ndim: Sequence[int]) -> np.ndarray[Any, Any]:
        """Like ``array`` but never ``None``."""
        array = self.array(key, kind, ndim)
        assert array is not None
        return array

    def rows(self, key: str, arrays: dict[str, np.ndarray[Any, Any] | None], expected: int) -> None:
        """Check that every given array has ``expected`` rows."""
        for name, array in arrays.items():
            if array is not None and array.shape[0] != expected:
                raise self.fail("bad_shape", f"array {name!r} has {array.shape[0]} rows, {key} says {expected}")


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level
