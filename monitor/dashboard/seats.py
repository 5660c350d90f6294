"""The viewer limit: at most ``max_viewers`` dashboard sessions at a time, and the page for the rest.

Each dashboard session takes a ``Seat`` when Bokeh builds its document and
gives it back when the session closes (the tab went away, the viewer was
dropped as too slow, or Bokeh destroyed it). A document built while every
seat is taken gets a short page that says so instead of the dashboard; the
page retries by itself (``retry_ms``), so a lab screen gets in as soon as a
seat frees, and a refused page costs the server no hub subscription and no
callbacks.

Thread safety: used only on the server's event loop.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

from bokeh.document import Document
from bokeh.models.widgets import Div

from monitor.dashboard.template import page_template, page_variables
from monitor.dashboard.theme import Look

log = logging.getLogger(__name__)
RETRY_MS = 5_000
"""How long a refused page waits before trying again."""


class Seat:
    """One taken place under the viewer limit; ``release`` gives it back (safe to call twice)."""

    def __init__(self, seats: Seats) -> None:
        self._seats: Seats | None = seats

    def release(self) -> None:
        """Give the place back."""
        seats, self._seats = self._seats, None
        if seats is not None:
            seats.taken -= 1


class Seats:
    """Counts open dashboard sessions against a limit.

    Invariants: ``0 <= taken <= limit``; ``refused`` counts every ``take``
    that found no free seat.
    """

    def __init__(self, limit: int, on_refused: Callable[[], None] = lambda: None) -> None:
        if limit < 1:
            raise ValueError(f"the viewer limit must be at least 1, got {limit}")
        self.limit = limit
        self.taken = 0
        self.refused = 0
        self._on_refused = on_refused

    def take(self) -> Seat | None:
        """A seat, or None (counted, and reported to ``on_refused``) when all are taken."""
        if self.taken >= self.limit:
            self.refused += 1
            log.warning("refused a dashboard viewer: all %d viewer seats are taken", self.limit)
            self._on_refused()
            return None
        self.taken += 1
        return Seat(self)


def limit_page(doc: Document, look: Look, limit: int, healthz_path: str) -> None:
    """Fill ``doc`` with a page that says the viewer limit is reached and retries by itself."""
    doc.title = "labscreen: viewer limit reached"
    doc.template = page_template()
    doc.template_variables.update(page_variables(look.page_css(), healthz_path, kiosk=False, retry_ms=RETRY_MS))
    style = f"font-size:{look.px(18)};padding:32px;color:{look.text}"
    text = (
        f"<div style='{style}'><b>Viewer limit reached.</b> This labscreen server shows its dashboard to at most "
        f"{html.escape(str(limit))} viewers at a time. This page tries again every {RETRY_MS // 1000} s; "
        "close another dashboard tab, or ask whoever runs the server to raise <code>--max-viewers</code>.</div>"
    )
    doc.add_root(Div(text=text, name="viewer-limit", disable_math=True, sizing_mode="stretch_width"))
