"""The stock of blank figures (``monitor.dashboard.blanks``): made while the loop is free, taken by sessions."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import numpy as np
import pytest

from monitor.dashboard.batch import Batch
from monitor.dashboard.blanks import FigureStock
from monitor.dashboard.panels.curves import CurvesPanel, blank_chart
from monitor.dashboard.theme import look_for
from monitor.wire import Scalars

SETTLE = 0.05


class Maker:
    """Makes numbered stand-ins for figures (the stock does not look inside them)."""

    def __init__(self) -> None:
        self.numbers = itertools.count()
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return next(self.numbers)


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_blanks_are_made_once_the_loop_settles_and_taken_without_making_one() -> None:
    stock = FigureStock(keep=3, settle=SETTLE)
    make = Maker()
    stock.keep("a", make)
    assert stock.held("a") == 0  # nothing made at once
    await wait_for(lambda: stock.held("a") == 3)
    made = make.calls
    assert stock.take("a", make) in range(3) and make.calls == made  # one made ahead
    assert stock.held("a") == 2
    await wait_for(lambda: stock.held("a") == 3)  # replaced
    await asyncio.sleep(SETTLE * 3)
    assert stock.held("a") == 3  # and no more
    stock.close()


async def test_a_kind_first_taken_is_made_at_once_then_kept() -> None:
    stock = FigureStock(keep=2, settle=SETTLE)
    make = Maker()
    assert stock.take("b", make) == 0 and make.calls == 1
    await wait_for(lambda: stock.held("b") == 2)
    stock.close()


async def test_nothing_is_made_while_figures_keep_being_taken() -> None:
    stock = FigureStock(keep=2, settle=1.0)
    make = Maker()
    for _ in range(5):  # a take every 0.05 s: never 1 s without one
        stock.take("c", make)
        await asyncio.sleep(0.05)
        assert stock.held("c") == 0
    await wait_for(lambda: stock.held("c") == 2)
    stock.close()


async def test_a_closed_stock_makes_nothing_and_holds_nothing() -> None:
    stock = FigureStock(keep=2, settle=SETTLE)
    make = Maker()
    stock.keep("d", make)
    await wait_for(lambda: stock.held("d") == 2)
    stock.close()
    stock.close()
    assert stock.held("d") == 0
    stock.take("d", make)  # still answers, by making one
    await asyncio.sleep(SETTLE * 3)
    assert stock.held("d") == 0


async def test_a_kind_that_cannot_be_made_is_dropped_and_the_others_still_made(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> None:
        raise RuntimeError("no figure")

    stock = FigureStock(keep=2, settle=SETTLE)
    make = Maker()
    with caplog.at_level(logging.ERROR, logger="monitor.dashboard.blanks"):
        stock.keep("broken", broken)
        stock.keep("fine", make)
        await wait_for(lambda: stock.held("fine") == 2)
    assert stock.held("broken") == 0
    assert caplog.text.count("could not make a blank figure of kind 'broken'") == 1
    with pytest.raises(RuntimeError):
        stock.take("broken", broken)  # a take still makes its own, and says so
    await asyncio.sleep(SETTLE * 3)
    assert caplog.text.count("could not make a blank figure") == 1  # not tried again in the background
    stock.close()


async def test_the_stock_is_bounded_and_the_kinds_taken_last_come_first() -> None:
    stock = FigureStock(keep=2, settle=SETTLE, most=3)
    make = Maker()
    stock.keep("old", make)
    await wait_for(lambda: stock.held("old") == 2)
    stock.take("new", make)  # a kind asked for since: it is filled first, from the old kind's share
    await wait_for(lambda: stock.held("new") == 2)
    await asyncio.sleep(SETTLE * 3)
    assert (stock.held("new"), stock.held("old")) == (2, 1)
    stock.close()


def test_a_blank_chart_is_a_whole_figure_but_its_name_title_and_lines() -> None:
    kind, make = blank_chart(look_for(False, dark=False), by_time=False, log_y=True)
    assert kind == ("curves", "light", False, True)
    one, two = make(), make()
    assert one is not two and one.toolbar is not two.toolbar
    assert one.name is None and one.renderers == [] and type(one.y_scale).__name__ == "LogScale"
    assert one.toolbar_location is None and one.tags == ["toolbar-after-paint:above"]


def test_a_chart_from_the_stock_keys_its_y_labels_by_its_own_name() -> None:
    """``steady_y_labels`` remembers the widest label per chart name: set once the blank has its name."""
    stock = FigureStock()
    stock.closed = True  # taken here, made by nobody in the background
    panel = CurvesPanel(look_for(False, dark=False), str, figures=stock)
    panel.reset(["r"])
    panel.update(Batch.of([Scalars("r", 1, ("loss", "accuracy"), np.arange(2), np.zeros(2), np.arange(2), np.ones(2))]))
    keys = {chart.fig.name: chart.fig.yaxis[0].formatter.args["key"] for chart in panel._charts.values()}
    assert keys == {"chart:loss": "chart:loss", "chart:accuracy": "chart:accuracy"}
