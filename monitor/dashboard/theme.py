"""Light and dark looks, and the lab-screen (kiosk) variant of the dark one.

A ``Look`` bundles the Bokeh ``Theme`` for plots, the colours the panels use
in their own HTML (status badges, empty states) and the page CSS the
template puts around the document. Kiosk mode is dark with large type so a
run's status and staleness read across a room.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bokeh.core.enums import SizingModeType as SizingMode
from bokeh.palettes import Category20_20, Turbo256
from bokeh.themes import Theme

from monitor.store.base import RunStatus

LINE_COLORS: tuple[str, ...] = tuple(Category20_20[0::2] + Category20_20[1::2])
"""The first colours of lines told apart by colour: Category10's ten strong colours, then their light tints."""
_SPREAD = (24, 232)
"""The stretch of Turbo256 the colours past the twentieth are spread over: not its near-black ends."""


def line_colors(count: int) -> list[str]:
    """``count`` colours, no two alike, for the runs compared or a chart's series: ``LINE_COLORS``, then more.

    Past the twentieth they are spread evenly over Turbo's hues (each differs
    from every other; neighbours in the list are alike). The first ten are
    Category10 whatever ``count`` is, so a run keeps its colour when an 11th
    is picked. They repeated after 10 runs and 20 series: a chart of 33
    gradient norms drew 13 pairs of lines alike.
    """
    if count <= len(LINE_COLORS):
        return list(LINE_COLORS[:count])
    extra = count - len(LINE_COLORS)
    low, high = _SPREAD
    spread = [Turbo256[low + round(i * (high - low) / max(1, extra - 1))] for i in range(extra)]
    return [*LINE_COLORS, *spread]


@dataclass(frozen=True)
class Look:
    """Everything that differs between light, dark and kiosk."""

    name: str
    dark: bool
    scale: float
    background: str
    panel: str
    text: str
    muted: str
    grid: str
    status_colors: dict[str, str]
    fill: bool = False
    """Plots fill the window's height instead of having one of their own (the lab screen, which nobody scrolls)."""

    def px(self, size: float) -> str:
        """A CSS font size scaled for this look, e.g. ``look.px(14)`` -> ``"14px"``."""
        return f"{round(size * self.scale)}px"

    def status_color(self, status: RunStatus | None) -> str:
        """Badge colour of a run status (grey for none)."""
        return self.status_colors.get(status or "", self.muted)

    @property
    def stretch(self) -> SizingMode:
        """The sizing mode of layouts holding plots: the window's width, and its height too when ``fill``."""
        return "stretch_both" if self.fill else "stretch_width"

    def plot_size(self, height: int) -> dict[str, Any]:
        """A figure's size arguments: ``height`` (scaled) and the width given, or all the room given if ``fill``."""
        if self.fill:
            return {"sizing_mode": "stretch_both", "min_height": round(80 * self.scale)}
        return {"sizing_mode": "stretch_width", "height": round(height * self.scale)}

    def toolbar(self) -> dict[str, Any]:
        """A figure's toolbar arguments: none on the lab screen, which nobody is at.

        On the desk the toolbar sits inside the plot, at its top, shown while
        the pointer is over the plot (the theme's ``autohide``), and the page
        gives it to the plot only after the plot's first paint
        (``static/paint_fix.js`` change 12): building ten charts' toolbars
        (tool buttons, each its own element and styles) was about a tenth of
        the time to open a run. Inside the plot, a toolbar that comes later
        moves nothing.
        """
        if self.name == KIOSK_NAME:
            return {"toolbar_location": None}
        return {"toolbar_location": None, "toolbar_inner": True, "tags": [f"{TOOLBAR_AFTER_PAINT}above"]}

    def bokeh_theme(self) -> Theme:
        """The Bokeh theme for plots and axes in this look."""
        return Theme(json=_theme_json(self))

    def page_css(self) -> str:
        """CSS for the page around the Bokeh roots."""
        css = (
            f"html, body {{ background: {self.background}; color: {self.text}; "
            f"font-family: system-ui, sans-serif; font-size: {self.px(14)}; }}"
        )
        if self.fill:  # the roots (in display: contents wrappers) stack in the window's height; more
            # specific than the rule of Bokeh's template (display: flow-root), which comes after this one
            css += " html > body { display: flex; flex-direction: column; padding: 0 8px; }"
        return css


KIOSK_NAME = "kiosk"
TOOLBAR_AFTER_PAINT = "toolbar-after-paint:"
"""A plot tagged ``toolbar-after-paint:<location>`` gets its toolbar there after its first paint (``Look.toolbar``)."""

_STATUS = {"running": "#2ca02c", "finished": "#1f77b4", "crashed": "#d62728", "stale": "#ff7f0e"}
LIGHT = Look("light", False, 1.0, "#ffffff", "#ffffff", "#222222", "#6b6b6b", "#e5e5e5", _STATUS)
DARK = Look("dark", True, 1.0, "#15191e", "#1d232a", "#e6e6e6", "#9aa4ae", "#2e3740", _STATUS)
KIOSK = Look(KIOSK_NAME, True, 1.6, "#0b0e12", "#12171d", "#f2f2f2", "#a5afb9", "#27303a", _STATUS, fill=True)


def look_for(kiosk: bool, dark: bool) -> Look:
    """The look of a session: kiosk wins over dark, dark over light."""
    if kiosk:
        return KIOSK
    return DARK if dark else LIGHT


def widget_css(look: Look) -> str:
    """CSS for the widgets' shadow DOM (inputs, buttons, tables, tabs), which page CSS cannot reach."""
    base = f"background-color: {look.panel}; color: {look.text}; border-color: {look.grid};"
    selected = f"background-color: {look.grid}; color: {look.text};"
    return (
        f":host {{ color: {look.text}; font-size: {look.px(14)}; }}"
        f".bk-input, select, option, .bk-btn {{ {base} }}"
        f".bk-btn.bk-active, .bk-btn:hover {{ {selected} }}"
        f".bk-slider-title, .bk-input-group label {{ color: {look.text}; }}"
        f".slick-header-columns, .slick-header-column, .slick-row, .slick-cell {{ {base} }}"
        f".slick-row.odd .slick-cell {{ background-color: {look.background}; }}"
        + selection_css(look)
        + f".slick-row.active .slick-cell {{ {selected} }}"
        f".bk-header {{ border-color: {look.grid}; }}"
        f".bk-tab {{ color: {look.muted}; border-color: {look.grid}; }}"
        f".bk-tab.bk-active {{ {base} }}"
    )


def selection_css(look: Look) -> str:
    """Selected table rows (the runs compared) in a blue that stands out from the zebra stripes."""
    tint = "#1f4e79" if look.dark else "#cfe3f7"
    rule = f"background-color: {tint}; color: {look.text}; font-weight: 600;"
    return f".slick-row .slick-cell.selected, .slick-row.odd .slick-cell.selected {{ {rule} }}"  # over the stripes


def widget_stylesheets(look: Look) -> list[str]:
    """The stylesheets the theme gives every widget (a widget setting its own must keep these)."""
    return [widget_css(look) if look.dark else selection_css(look)]


def _theme_json(look: Look) -> dict[str, Any]:
    text = {"text_color": look.text, "text_font_size": look.px(15)}
    axis = {
        "axis_label_text_color": look.text, "major_label_text_color": look.muted,
        "major_label_text_font_size": look.px(12), "axis_label_text_font_size": look.px(13),
        "axis_line_color": look.muted, "major_tick_line_color": look.muted, "minor_tick_line_color": look.muted,
    }  # fmt: skip
    widgets = {"stylesheets": widget_stylesheets(look)}
    return {
        "attrs": {
            "Widget": widgets, "Tabs": widgets,
            "Plot": {
                "background_fill_color": look.panel, "border_fill_color": look.panel,
                "outline_line_color": look.grid,
                # A lab screen has nobody at it: no toolbars (hover still works where there is a mouse).
                **({"toolbar_location": None} if look.name == KIOSK_NAME else {}),
            },
            "Toolbar": {"autohide": True},  # inside the plot (Look.toolbar): shown while the pointer is over it
            "Title": text,
            "Axis": axis,
            "Grid": {"grid_line_color": look.grid, "grid_line_alpha": 1.0},
            "Legend": {
                "background_fill_color": look.panel, "background_fill_alpha": 0.7, "border_line_alpha": 0,
                "label_text_color": look.text, "label_text_font_size": look.px(11),
            },
            "Text": {"text_color": look.text},
        }
    }  # fmt: skip
