"""Pacing a session's flushes to what its page has drawn (credit-based flow control).

The server can coalesce and send updates faster than a browser can apply
and paint them; without feedback the page falls further behind with every
flush and its latency grows without bound. After each flush the session
numbers it in the ``Flow`` model's ``sent``; the page answers, once that
patch is applied and the next frame painted, by writing the number into
``painted``, which Bokeh syncs to the server. ``Flow`` is a ``DataModel``
(BokehJS makes its class from the definition the server sends): a document
root with no view. It was a hidden ``Div`` before, and BokehJS re-renders a
``Div`` and invalidates its layout on any property change, twice a flush,
which dirtied the page's styles right before every chart's repaint. While more than
``MAX_UNACKED`` flushes wait for their answer the feed holds, so updates
coalesce into fewer, larger flushes at the page's own pace, and resumes on
the next answer.

A client that never answers (a ``bokeh.client`` script runs no JavaScript)
is never held: pacing starts with the first answer. A page hidden between a
patch and its frame gets no frame until it is shown again, so a page that is
hidden a second after a patch answers then, painted or not; otherwise the
feed would hold (and the hub subscription shed its oldest messages) for as
long as the tab stays hidden. A visible page that is slow to paint is not
answered for: that is what pacing waits for.

Thread safety: used only on the server's event loop, in document callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bokeh.core.properties import Int
from bokeh.model import DataModel
from bokeh.models import CustomJS

MAX_UNACKED = 2
"""Flushes the page may have outstanding before the feed holds."""
ACK_JS = """
const n = cb_obj.sent;
const answer = () => { if (cb_obj.painted < n) cb_obj.painted = n };
if (document.hidden) setTimeout(answer, 0);   // no frames while hidden: answer once applied
else requestAnimationFrame(() => setTimeout(answer, 0));
setTimeout(() => { if (document.hidden) answer() }, 1000);   // hidden since: that frame never comes
"""


class Flow(DataModel):
    """The pacing channel of one session: flushes sent by the server, and painted by the page."""

    sent = Int(default=0)
    painted = Int(default=0)


class PageAcks:
    """Counts flushes sent and answered for one session's page."""

    def __init__(self, on_clear: Callable[[], None], max_unacked: int = MAX_UNACKED) -> None:
        self.flow = Flow(name="flow")
        self.flow.js_on_change("sent", CustomJS(code=ACK_JS))
        self.flow.on_change("painted", self._on_answer)
        self._on_clear, self._max = on_clear, max_unacked
        self.sent = 0
        self.acked = 0
        self.answering = False

    def mark(self) -> None:
        """Number the flush just made (call after the panels drew it)."""
        self.sent += 1
        self.flow.update(sent=self.sent)

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
