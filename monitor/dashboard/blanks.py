"""Blank figures made ahead of time, so that opening a run does not wait for them.

A chart's figure (Bokeh's ``figure()``: its ranges, scales, axes, grids,
title, toolbar and tools, about 30 models) took about 12 ms of the event
loop to make, and a run of ten series opens ten charts: 120 ms of the 200
that drawing the run took, while the page that asked for it waited for its
document. A ``FigureStock`` keeps a few blank figures of each kind a panel
has asked for: once no figure has been taken for ``settle`` seconds (a
page opening is the server's busiest moment), it makes them one per turn
of the loop, so whatever else is due (a flush, a request) goes between
two; it does not otherwise look at how busy the loop is. It keeps up to
``keep`` of a kind and ``most`` in all, the kinds taken most recently
first: a kind asked for once (a chart with a log y scale) does not keep
its figures, nor cost their making, for good. A blank figure belongs to no
document, so any session can take it; once taken it is that session's
alone. With none in stock, ``take`` makes one then and there, as before.

Thread safety: the server's event loop only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable
from typing import Any

from tornado.ioloop import IOLoop

log = logging.getLogger(__name__)

KEEP = 12
"""Blank figures kept of each kind: the charts of a run of a dozen metric groups."""
MOST = 24
"""Blank figures kept in all (about 30 models each)."""
SETTLE_SECONDS = 0.5
"""Figures are made only once none has been taken for this long."""

Make = Callable[[], Any]
"""Makes one blank figure of a kind (a ``bokeh.plotting.figure``)."""


class FigureStock:
    """Blank figures by kind, taken by sessions and made again while the loop is free."""

    def __init__(self, keep: int = KEEP, settle: float = SETTLE_SECONDS, most: int = MOST) -> None:
        self._keep, self._settle, self._most = keep, settle, most
        self._makers: dict[Hashable, Make] = {}
        self._made: dict[Hashable, list[Any]] = {}
        self._asked: dict[Hashable, float] = {}
        """When each kind was last taken (or first kept): the most recent are stocked first."""
        self._broken: set[Hashable] = set()
        self._last_take = -math.inf
        self._timer: object | None = None
        self._loop: IOLoop | None = None
        self.closed = False

    def keep(self, kind: Hashable, make: Make) -> None:
        """Keep blank figures of ``kind``, made by ``make``, from now on. Call on the event loop."""
        self._register(kind, make)
        self._schedule(self._settle)

    def take(self, kind: Hashable, make: Make) -> Any:
        """A blank figure of ``kind``: one made ahead if there is one, else ``make()`` now.

        ``make`` also makes the figures that replace it (the first ``make``
        given for a kind is the one kept). Raises what ``make`` raises.
        """
        self._register(kind, make)
        self._last_take = time.monotonic()
        self._schedule(self._settle)
        made = self._made.get(kind)
        return made.pop() if made else make()

    def held(self, kind: Hashable) -> int:
        """How many blank figures of ``kind`` are in stock."""
        return len(self._made.get(kind, ()))

    def close(self) -> None:
        """Make no more figures and let go of those made. Safe to call twice."""
        self.closed = True
        if self._timer is not None and self._loop is not None:
            self._loop.remove_timeout(self._timer)
        self._timer = None
        self._made.clear()

    def _register(self, kind: Hashable, make: Make) -> None:
        self._asked[kind] = time.monotonic()
        if kind not in self._broken:
            self._makers.setdefault(kind, make)

    def _schedule(self, delay: float) -> None:
        if self.closed or self._timer is not None:
            return
        self._loop = IOLoop.current()
        self._timer = self._loop.call_later(delay, self._make_one)

    def _make_one(self) -> None:
        self._timer = None
        wait = self._last_take + self._settle - time.monotonic()
        if wait > 0:  # taken from since: a page is opening
            self._schedule(wait)
            return
        by_recency = sorted(self._makers, key=lambda k: self._asked.get(k, -math.inf), reverse=True)
        kind = next((k for k in by_recency if self.held(k) < self._keep), None)
        if kind is None:
            return
        if sum(map(self.held, by_recency)) >= self._most:  # full: make room from the least recent kind, if older
            oldest = next((k for k in reversed(by_recency) if self.held(k) and k != kind), None)
            if oldest is None or by_recency.index(oldest) < by_recency.index(kind):
                return
            self._made[oldest].pop()
        try:
            figure = self._makers[kind]()
        except Exception:
            log.exception("could not make a blank figure of kind %r; none is kept of that kind", kind)
            del self._makers[kind]
            self._broken.add(kind)
        else:
            self._made.setdefault(kind, []).append(figure)
        self._schedule(0.0)  # the next one on a later turn: what arrived meanwhile goes first
