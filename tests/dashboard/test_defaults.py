"""Bokeh's remembered property defaults (``monitor.dashboard.defaults``) answer as Bokeh does."""

from __future__ import annotations

import pytest
from bokeh.core.property.bases import Property
from bokeh.core.property.descriptors import PropertyDescriptor
from bokeh.model import Model
from bokeh.models import ColumnDataSource, Title
from bokeh.plotting import figure
from bokeh.themes import Theme

from monitor.dashboard.defaults import (
    ORIGINAL_HAS_UNSTABLE_DEFAULT,
    ORIGINAL_THEMED_DEFAULT,
    immutable,
    remember_defaults,
    same,
)

MODELS = sorted(Model.model_class_reverse_map.values(), key=lambda cls: cls.__qualified_model__)


@pytest.fixture(scope="module", autouse=True)
def remembered() -> None:
    assert remember_defaults()
    assert remember_defaults()  # a second install changes nothing


def test_every_models_defaults_are_bokehs_own_read_twice() -> None:
    assert ORIGINAL_THEMED_DEFAULT is not None and ORIGINAL_HAS_UNSTABLE_DEFAULT is not None
    compared = 0
    for cls in MODELS:
        for name in cls.properties():
            prop = cls.lookup(name).property
            if callable(cls._overridden_defaults().get(name, prop._default)):
                continue  # not cached: a function's default may differ per call (a new model, a new list)
            for _ in range(2):  # the first read fills the cache, the second answers from it
                expected = ORIGINAL_THEMED_DEFAULT(prop, cls, name, None)
                assert same(prop.themed_default(cls, name, None), expected), f"{cls.__name__}.{name}"
            compared += 1
    assert compared > 5000  # every Bokeh model's plain defaults, not a handful


def test_unstable_answers_are_bokehs_own_per_class() -> None:
    compared = 0
    for cls in MODELS:
        try:
            obj = cls()
        except Exception:  # abstract, or needs arguments
            continue
        for name in cls.properties():
            descriptor = cls.lookup(name)
            if type(descriptor).has_unstable_default is not PropertyDescriptor.has_unstable_default:
                continue  # an alias's descriptor answers itself
            assert ORIGINAL_HAS_UNSTABLE_DEFAULT is not None
            expected = ORIGINAL_HAS_UNSTABLE_DEFAULT(descriptor, obj)
            assert descriptor.has_unstable_default(obj) == expected == descriptor.has_unstable_default(obj)
            compared += 1
    assert compared > 5000


def test_mutable_defaults_stay_one_per_model_and_themes_still_win() -> None:
    one, two = figure(), figure()
    assert one.renderers is not two.renderers and one.toolbar is not two.toolbar
    one.renderers.append(one.line([0, 1], [0, 1]))
    assert two.renderers == []
    assert ColumnDataSource().data is not ColumnDataSource().data

    plain, themed = Title(), Title()
    assert plain.text_font_size == "13px"  # Bokeh's default, now remembered for Title
    Theme(json={"attrs": {"Title": {"text_font_size": "21px"}}}).apply_to_model(themed)
    assert themed.text_font_size == "21px" and plain.text_font_size == "13px"


def test_only_immutable_values_may_be_shared() -> None:
    assert all(immutable(value) for value in (None, True, 3, 2.5, "x", ("a", (1, 2.0))))
    assert not any(immutable(value) for value in ([], {}, ("a", []), {1}))
    assert same(float("nan"), float("nan")) and same((1, float("nan")), (1, float("nan")))
    assert not same(1.0, 2.0) and not same((1,), (1, 2))


def test_the_cache_is_bokehs_method() -> None:
    assert getattr(Property.themed_default, "__labscreen__", False)
