"""The lab-screen (kiosk) view's stage: the pages it shows in turn, one window high.

A lab screen has nobody to scroll or click, so the kiosk view shows one page
at a time in the window's height between the header and the events: the
training curves (over several pages when there are more charts than fit,
``CurvesPanel.pages``), then the weights, then the predictions, each for
``seconds`` (``?cycle=`` in the URL). The Weights or Predictions page is
skipped while its panel has nothing to show (the curves' page always shows,
with its empty state if need be). Each time the Weights or Predictions page
comes round again for the same runs it shows the next tensor or sample
(``Panel.advance``). A line of page names
above the stage says which page is shown, and what of (the tensor, the
sample), since the view has no pickers.

A page not shown is out of the document, as a desk view's hidden tab (see
``monitor.dashboard.layout``): its panel keeps its sources up to date, which
costs no messages while hidden, and it is sent whole when shown.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from bokeh.layouts import column
from bokeh.models.widgets import Div

from monitor.dashboard.panels.base import Panel
from monitor.dashboard.panels.curves import CurvesPanel
from monitor.dashboard.theme import Look

DEFAULT_SECONDS = 20.0
"""How long the lab screen shows each page by default."""
MIN_SECONDS = 2.0
"""The shortest time a page is shown (``?cycle=`` is clamped to it)."""


@dataclass(frozen=True)
class _Page:
    title: str
    panel: Panel
    part: int = 0
    """Which page of the curves' charts (0 for the other panels)."""
    parts: int = 1


class KioskStage:
    """The pages of the lab screen, one shown at a time, and the line naming them.

    ``layout`` is a document root that takes the window's height left by the
    other roots (the page CSS of a look with ``fill`` stacks the roots in a
    flex column). Call ``tick`` once a second.
    """

    def __init__(self, look: Look, curves: CurvesPanel, others: Sequence[tuple[str, Panel]], seconds: float) -> None:
        self._look, self._curves, self._others = look, curves, list(others)
        self._seconds = max(MIN_SECONDS, seconds)
        self._page = _Page("Training", curves, 0, 1)
        self._since: float | None = None
        self._visited: set[str] = set()
        self.indicator = Div(text="", name="kiosk-pages", sizing_mode="stretch_width", disable_math=True)
        self._holder = column(curves.layout, sizing_mode="stretch_both", name="kiosk-page")
        self.layout = column(
            self.indicator,
            self._holder,
            sizing_mode="stretch_width",
            styles={"flex": "1 1 0", "min-height": f"{round(240 * look.scale)}px"},
            name="kiosk-stage",
        )

    @property
    def shown(self) -> str:
        """The title of the page shown, with its part for the curves' pages (e.g. ``"Training 2/3"``)."""
        return _label(self._page)

    def reset(self) -> None:
        """The runs shown changed: start again from the curves, and from each panel's first tensor or sample."""
        self._visited.clear()
        self._since = None
        self._show(_Page("Training", self._curves, 0, 1))

    def tick(self, now: float) -> None:
        """Show the next page once the current one has been up ``seconds``, or at once if it has emptied."""
        pages = self._pages()
        current = next((p for p in pages if _label(p) == _label(self._page)), None)
        if self._since is None or current is None or now - self._since >= self._seconds:
            following = pages[(pages.index(current) + 1) % len(pages)] if current is not None else pages[0]
            self._show(following if self._since is not None else pages[0])
            self._since = now
        self._write_indicator(pages)

    def _pages(self) -> list[_Page]:
        parts = self._curves.pages()
        pages = [_Page("Training", self._curves, part, parts) for part in range(parts)]
        pages += [_Page(title, panel) for title, panel in self._others if panel.has_data()]
        return pages

    def _show(self, page: _Page) -> None:
        if page.panel is self._curves:
            self._curves.show_page(page.part)
        elif page.title in self._visited:
            page.panel.advance()
        self._visited.add(page.title)
        self._page = page
        if self._holder.children[0] is not page.panel.layout:
            self._holder.children = [page.panel.layout]

    def _write_indicator(self, pages: list[_Page]) -> None:
        look = self._look
        items = []
        for page in pages:
            label = f"<span style='white-space:nowrap'>{html.escape(_label(page))}</span>"
            if _label(page) == _label(self._page):
                caption = page.panel.caption()
                label = f"<b style='color:{look.text};white-space:nowrap'>▶ {html.escape(_label(page))}</b>"
                if caption:  # a long tensor name may break anywhere rather than run off a narrow window
                    label += f"<span style='color:{look.text};overflow-wrap:anywhere'> · {html.escape(caption)}</span>"
            items.append(f"<span style='margin-right:28px'>{label}</span>")
        # Spaces between the names: a line that does not fit the window wraps instead of running off it.
        text = f"<div style='font-size:{look.px(16)};color:{look.muted};padding:2px 0 6px'>{' '.join(items)}</div>"
        if self.indicator.text != text:
            self.indicator.text = text


def _label(page: _Page) -> str:
    return f"{page.title} {page.part + 1}/{page.parts}" if page.parts > 1 else page.title
