"""Tick labels of the dashboard's charts: steps, values of any magnitude, and class names.

Bokeh's default labels read "5.000e-4" for a weight, "1.80e-2" for a flat
learning rate and "10000 12000 14000" for steps, which run into each other
on a narrow chart. These formatters give "5e-4", "0.0180" and "2.5k". Each
call makes a new model: a Bokeh model belongs to one document.
"""

from __future__ import annotations

from bokeh.models import CategoricalAxis, CustomJSTickFormatter, NoOverlap, NumeralTickFormatter
from bokeh.plotting import figure

Y_LABEL_CHARS = 9
"""Every steady y tick label is padded to at least this many characters of a monospace font (``steady_y_labels``)."""

# A tick's label from its value and its axis's ticks: fixed decimals as few as tell the ticks apart,
# an exponent for values of 1e5 and more, under 1e-3, or needing more than 6 decimals.
_LABEL_JS = """
const label = (value) => {
  if (value === 0) return "0";
  if (ticks.length < 2) return String(Number(value.toPrecision(6)));  // no step to size the decimals by
  // 14.2 - 14.1 is 0.0999999…: rounded, or it would ask for one decimal too many ("14.10")
  const step = Number(Math.abs(ticks[1] - ticks[0]).toPrecision(6));
  const big = Math.max(...ticks.map(Math.abs));
  let places = -Math.floor(Math.log10(step));  // digits after the point that a step of 1, 2 or 5 needs
  for (let more = 0; more < 3 && Math.abs(step * 10 ** places - Math.round(step * 10 ** places)) > 1e-6; more++)
    places++;  // a step of 2.5 or 0.25
  if (big >= 1e5 || big < 1e-3 || places > 6) {
    const digits = Math.floor(Math.log10(Math.abs(value))) + places;
    return value.toExponential(Math.max(0, Math.min(9, digits))).replace("e+", "e");
  }
  return value.toFixed(Math.max(0, places));
};"""
# Once per axis, not per tick: BokehJS binds ``this`` to one object for all the ticks it formats at a time.
_STEADY_JS = """
if (this.labels === undefined) {
  const widest = (window.__labscreenYLabelWidths ??= new Map());
  this.labels = ticks.map(label);
  this.chars = Math.max(width, widest.get(key) ?? 0, ...this.labels.map((text) => text.length));
  widest.set(key, this.chars);
}
return this.labels[index].padStart(this.chars);
"""


def step_ticks() -> NumeralTickFormatter:
    """Step axis labels as 500, 2.5k, 14k, 1.2m."""
    return NumeralTickFormatter(format="0.[0]a")


def value_ticks() -> CustomJSTickFormatter:
    """Value axis labels as 0.0180, 5e-4, 1.2e6: as many digits as tell the ticks apart, and no more."""
    return CustomJSTickFormatter(code=_LABEL_JS + "return label(tick);")


def steady_y_labels(fig: figure) -> None:
    """Give ``fig``'s linear y axis value labels a width that changes rarely, and only grows.

    BokehJS lays a plot out again whenever an axis changes size (and with
    it the grid of charts around it), and a y axis changes width whenever
    its widest tick label does: as a curve's range grows, nearly every
    repaint of a live chart also re-measured and re-laid out the page around
    it (a quarter of the page's time at 1,000 points/s). Labels are padded
    to at least ``Y_LABEL_CHARS`` monospace characters, and to the widest
    label this chart (by name, in this page) has shown: values needing more
    digits (a timestamp, a large counter with small steps) widen the axis a
    few times as the range settles, instead of on every other repaint.
    """
    args = {"width": Y_LABEL_CHARS, "key": fig.name}
    fig.yaxis.formatter = CustomJSTickFormatter(args=args, code=_LABEL_JS + _STEADY_JS)
    fig.yaxis.major_label_text_font = "monospace"


def class_labels_apart(*figures: figure) -> None:
    """Show as many of each categorical axis's names as fit without touching: every other one, or fewer, when crowded.

    BokehJS draws every factor's name by default, so ten class names like
    "class_7" on a 400 px chart, or a hundred on any chart, ran into each
    other and none could be read. The hover names every bar and cell.
    """
    for fig in figures:
        for axes, gap in ((fig.xaxis, 8), (fig.yaxis, 2)):  # px between names side by side, or one above another
            for axis in axes:
                if isinstance(axis, CategoricalAxis):
                    axis.major_label_policy = NoOverlap(min_distance=gap)
