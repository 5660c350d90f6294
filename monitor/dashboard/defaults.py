"""Bokeh's property defaults, worked out once per class instead of on every read.

Bokeh works a property's default out again each time an unset property is
read: it merges the overridden defaults of every class along the model's
MRO, copies the default, validates it, and asks whether it is "unstable"
(a fresh object per model), importing two names to do so. Building a
document reads most properties of every new model, and encoding it for the
page reads all of them: a tab of ten charts is about 470 models, and those
reads were most of the server's time to open it (building the charts from
the history, then encoding them for the page's first pull, on the loop).

``remember_defaults`` caches two answers that depend only on the property
and the model's class, both fixed when Bokeh creates the class:

- a property's default for a class, when the default is a plain value (not
  a function, which may answer differently each call, nor a theme's value)
  and what Bokeh makes of it is immutable (None, a bool, number or string,
  or a tuple of those), so a cached value cannot be changed through one
  model and seen in another;
- whether a property's default is unstable for a class.

This reaches into ``Property.themed_default`` and
``PropertyDescriptor.has_unstable_default`` as of Bokeh 3.8 and 3.9; if
either is missing it is left alone, and Bokeh works as before.

Thread safety: the caches are plain dicts; two threads missing at once both
compute the same value and store it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from bokeh.core.property.bases import Property
from bokeh.core.property.descriptors import PropertyDescriptor

log = logging.getLogger(__name__)

_IMMUTABLE = (type(None), bool, int, float, str)

_defaults: dict[tuple[int, type, str, bool], tuple[Any, Any]] = {}
"""(id of the property, class, name, no_eval) -> (the property, kept alive so the id stays its own; the default)."""

_unstable: dict[tuple[int, type], tuple[Any, bool]] = {}
"""(id of the descriptor, class) -> (the descriptor, whether its default is unstable for the class)."""

ORIGINAL_THEMED_DEFAULT: Callable[..., Any] | None = getattr(Property, "themed_default", None)
ORIGINAL_HAS_UNSTABLE_DEFAULT: Callable[..., bool] | None = getattr(PropertyDescriptor, "has_unstable_default", None)


def immutable(value: Any) -> bool:
    """Whether ``value`` is None, a bool, number or string, or a tuple of such (so it may be shared)."""
    if type(value) is tuple:
        return all(immutable(item) for item in value)
    return type(value) in _IMMUTABLE


def same(a: Any, b: Any) -> bool:
    """Equality for defaults, where a NaN equals a NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def remember_defaults() -> bool:
    """Install both caches (once; later calls do nothing). False if this Bokeh lacks what they replace."""
    themed_default, has_unstable_default = ORIGINAL_THEMED_DEFAULT, ORIGINAL_HAS_UNSTABLE_DEFAULT
    if themed_default is None or has_unstable_default is None:
        log.warning("Bokeh's property defaults are not where labscreen expects them; left uncached")
        return False
    if getattr(Property.themed_default, "__labscreen__", False):
        return True

    def cached_themed_default(
        self: Property[Any], cls: type, name: str, theme_overrides: dict[str, Any] | None, *, no_eval: bool = False
    ) -> Any:
        if theme_overrides is not None and name in theme_overrides:
            return themed_default(self, cls, name, theme_overrides, no_eval=no_eval)
        key = (id(self), cls, name, no_eval)
        known = _defaults.get(key)
        if known is not None:
            return known[1]
        value = themed_default(self, cls, name, theme_overrides, no_eval=no_eval)
        source = cls._overridden_defaults().get(name, self._default)  # type: ignore[attr-defined]
        if not callable(source) and immutable(value):
            _defaults[key] = (self, value)
        return value

    def cached_has_unstable_default(self: PropertyDescriptor[Any], obj: Any) -> bool:
        key = (id(self), type(obj))
        known = _unstable.get(key)
        if known is not None:
            return known[1]
        unstable = has_unstable_default(self, obj)
        _unstable[key] = (self, unstable)
        return unstable

    cached_themed_default.__labscreen__ = True  # type: ignore[attr-defined]
    Property.themed_default = cached_themed_default  # type: ignore[method-assign]
    PropertyDescriptor.has_unstable_default = cached_has_unstable_default  # type: ignore[method-assign]
    return True
