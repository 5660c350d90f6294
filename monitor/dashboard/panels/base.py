"""What every panel is: a Bokeh layout fed by history, live batches and a clock.

A session calls ``reset`` when the runs it shows change (``compare`` when
some stay: runs added to a comparison or dropped from it),
``load`` once per run when that run's history arrives, ``update`` once per flush with the live
messages of the runs shown, and ``tick`` once a second. All calls happen on
the session's document (the document lock is held). Panels never read the
store themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from bokeh.models import GridBox, LayoutDOM
from bokeh.models.ui import UIElement
from bokeh.models.widgets import Div

from monitor.dashboard.batch import Batch
from monitor.dashboard.history import ALL, Parts, RunHistory
from monitor.dashboard.theme import Look

Array = np.ndarray[Any, Any]
LOADING_TEXT = "Loading the run's history…"


class Panel:
    """Base class: every hook is a no-op until a panel overrides it."""

    layout: LayoutDOM
    history: ClassVar[Parts] = ALL
    """The parts of a run's history the panel draws, in ``load`` *and* ``update``.

    A panel built late has only these read for it: a kind it draws live but leaves out here would start
    with a gap.
    """
    primary_only: ClassVar[bool] = False
    """Whether the panel shows the first of the runs shown only (then only that run's history is read for it)."""

    def reset(self, runs: Sequence[str]) -> None:
        """Forget everything; from now on ``runs`` are shown (the first is primary)."""

    def compare(self, runs: Sequence[str]) -> bool:
        """The runs shown become ``runs``, some of them shown already: keep what is drawn of the runs still shown.

        Returns whether the panel did; the session then loads only the runs
        added (``load``). False (the default for a panel that shows every
        run) has the panel ``reset`` and given the history of every run shown.
        A panel that shows the primary run alone is asked only while that
        stays (it is reset when the primary changes): it has nothing to change.
        """
        return self.primary_only

    def load(self, history: RunHistory) -> None:
        """Draw one run's history (called after ``reset`` for each run shown)."""

    def update(self, batch: Batch) -> None:
        """Draw live messages of the runs shown; called at most ~20 times a second."""

    def tick(self, now: float) -> None:
        """Once a second: refresh what depends on the clock."""

    def loading(self, on: bool) -> None:
        """The history of the runs shown is being loaded (``on``), or has been: an empty state says which.

        Until the history is drawn a panel is empty; telling a user what to send meanwhile misleads.
        """

    def has_data(self) -> bool:
        """Whether there is anything to show (the lab screen skips a panel with nothing but its empty state)."""
        return True

    def advance(self) -> None:
        """Move on to the next thing this panel shows one at a time (a tensor, a sample), if any."""

    def set_portrait(self, portrait: bool) -> None:
        """Lay the lab screen's plots out for a portrait window (stacked) or a landscape one (side by side)."""

    def caption(self) -> str:
        """What the panel shows now, in a few words, for a view without its controls ('' for nothing to say)."""
        return ""


EQUAL_SHARE: Any = "minmax(0, 1fr)"  # Any: Bokeh's stubs type track sizes as Property objects, not strings
"""A grid track of an equal share whatever its content ("1fr" alone lets content widen its column)."""


class Strip:
    """Plots side by side in a ``GridBox``, stacked in one column on a portrait lab screen (``set_portrait``)."""

    def __init__(self, look: Look, children: Sequence[LayoutDOM], name: str) -> None:
        self._children = list(children)
        cells = self._cells(portrait=False)
        self.layout = GridBox(children=cells, cols=EQUAL_SHARE, rows=EQUAL_SHARE, sizing_mode=look.stretch, name=name)

    def set_portrait(self, portrait: bool) -> None:
        """Stack the plots (``portrait``) or put them side by side; a no-op if they already are."""
        cells = self._cells(portrait)
        if cells != self.layout.children:
            self.layout.children = cells
            # Stacked, the strip takes a plot's share of the lab screen's height for each of its plots,
            # not one share for all of them beside a single plot below it.
            self.layout.styles = {"flex": f"{len(cells)} 1 0px"} if portrait else {}

    def _cells(self, portrait: bool) -> list[tuple[UIElement, int, int] | tuple[UIElement, int, int, int, int]]:
        return [(child, i, 0) if portrait else (child, 0, i) for i, child in enumerate(self._children)]


def empty_state(look: Look, name: str, text: str) -> Div:
    """A visible note that says what is missing and how to send it."""
    return Div(text=empty_html(look, text), name=name, sizing_mode="stretch_width", disable_math=True)


def empty_html(look: Look, text: str) -> str:
    """The HTML of an empty state's note saying ``text``."""
    style = f"color:{look.muted};font-size:{look.px(15)};padding:24px;border:1px dashed {look.grid};border-radius:6px"
    return f"<div style='{style}'>{text}</div>"


def floats(values: Any) -> Array:
    """A writable float64 copy, as a column (Bokeh sends it as a binary buffer).

    A copy, because arrays decoded from the wire are read-only views and
    ``ColumnDataSource.patch`` writes into its columns in place.
    """
    return np.array(values, dtype=np.float64)


def ints(values: Any) -> Array:
    """A writable int32 copy, as a column (Bokeh sends it as a binary buffer)."""
    return np.array(values, dtype=np.int32)
