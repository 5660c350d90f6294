"""Pacing a session's flushes to what its page has drawn (credit-based flow control).

The server can coalesce and send updates faster than a browser can apply
and paint them; without feedback the page falls further behind with every
flush and its latency grows without bound. After each flush the session
numbers it in the hidden ``flow`` model's ``tags``; the page answers, once
that patch is applied and the next frame painted, by writing the number back
into ``flow.text``, which Bokeh syncs to the server. While more than
``MAX_UNACKED`` flushes wait for their answer the feed holds, so updates
coalesce into fewer, larger flushes at the page's own pace, and resumes on
the next answer.

A client that never answers (a ``bokeh.client`` script runs no JavaScript)
is never held: pacing starts with the first answer.

Thread safety: used only on the server's event loop, in document callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bokeh.models import CustomJS
from bokeh.models.widgets import Div

MAX_UNACKED = 2
"""Flushes the page may have outstanding before the feed holds."""
ACK_JS = """
const n = cb_obj.tags[0];
const answer = () => { if (Number(cb_obj.text) < n) cb_obj.text = String(n) };
if (document.hidden) setTimeout(answer, 0);   // no frames while hidden: answer once applied
else requestAnimationFrame(() => setTimeout(answer, 0));
"""


class PageAcks:
    """Counts flushes sent and answered for one session's page."""

    def __init__(self, on_clear: Callable[[], None], max_unacked: int = MAX_UNACKED) -> None:
        self.flow = Div(text="0", visible=False, name="flow")
        self.flow.js_on_change("tags", CustomJS(code=ACK_JS))
        self.flow.on_change("text", self._on_answer)
        self._on_clear, self._max = on_clear, max_unacked
        self.sent = 0
        self.acked = 0
        self.answering = False

    def mark(self) -> None:
        """Number the flush just made (call after the panels drew it)."""
        self.sent += 1
        self.flow.tags = [self.sent]

    def clear(self) -> bool:
        """Whether another flush may go: the page keeps up, or has never answered."""
        return not self.answering or self.sent - self.acked < self._max

    def _on_answer(self, _attr: str, _old: Any, new: Any) -> None:
        try:
            number = int(new)
        except (TypeError, ValueError):
            return
        if self.acked < number <= self.sent:
            self.acked, self.answering = number, True
            self._on_clear()
