"""Names on the page: drawn on the charts' canvases (read back from the canvas calls), and in legends beside them."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from monitor.dashboard.grouping import GRADIENT_NORM
from producers.client import Monitor
from tests.dashboard.conftest import Viewer
from tests.serving import ServerThread

pytestmark = pytest.mark.browser

RECORD_TEXT_JS = """(() => {
  const fill = CanvasRenderingContext2D.prototype.fillText;
  window.__drawn = [];
  CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
    const m = this.getTransform();  // where on the canvas, and whether turned (a y axis's names)
    const width = this.measureText(text).width;
    window.__drawn.push({plot: window.__painting, text: String(text), x: m.a * x + m.c * y + m.e,
                         y: m.b * x + m.d * y + m.f, turned: m.b !== 0, align: this.textAlign, width: width * m.a});
    return fill.call(this, text, x, y, ...rest);
  };
})();"""
"""An init script: every string drawn on a canvas, with where it went, how wide it is, and the plot painting."""
DRAWN_NAMES_JS = """([name, prefix]) => window.__drawn
  .filter((d) => d.plot === name && !d.turned && d.text.startsWith(prefix))
  .map((d) => { const left = d.align === "center" ? d.x - d.width / 2 : d.align === "right" || d.align === "end"
                  ? d.x - d.width : d.x;
                return [d.text, left, left + d.width, Math.round(d.y)]; })"""
REPAINT_JS = """(name) => { const view = [...Bokeh.index.find(__find(name))][0];
  if (!view.__recorded) {  // each paint of this plot replaces what it drew last time
    const paint = view.paint;
    view.paint = function (...args) {
      window.__drawn = window.__drawn.filter((d) => d.plot !== name);
      window.__painting = name;
      try { return paint.apply(this, args); } finally { window.__painting = undefined; }
    };
    view.__recorded = true;
  }
  view.request_paint(); return true; }"""
"""Have the chart ``name`` drawn again, whole (its layers are otherwise reused), recording its last paint only."""


def test_crowded_class_names_are_thinned_out_instead_of_drawn_over_each_other(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Ten names like "class_7" under a chart a third of 1,024 px wide ran into each other: none could be read."""
    monitor = monitors("crowded", run="crowded")
    monitor.log({"loss": 1.0}, step=0)
    y_true = np.arange(10)
    monitor.predictions("val", y_true, np.eye(10)[y_true], step=0, classes=[f"class_{i}" for i in range(10)])
    viewer = viewers(
        server.url + "/?run=crowded", viewport={"width": 1024, "height": 768}, init_scripts=(RECORD_TEXT_JS,)
    )
    viewer.show("Predictions")
    viewer.wait_column_length("predictions-classes", "cls", 10)
    viewer.wait_column_length("predictions-sample", "cls", 10)
    for figure in ("predictions-classes-figure", "predictions-sample-figure", "predictions-confusion-figure"):
        viewer.wait(REPAINT_JS, figure)
        viewer.wait("([name, prefix]) => window.__drawn.some((d) => d.plot === name && d.text.startsWith(prefix))",
                    [figure, "class_"])  # fmt: skip
        drawn = sorted(viewer.page.evaluate(DRAWN_NAMES_JS, [figure, "class_"]), key=lambda d: (d[3], d[1]))
        rows: dict[int, list[tuple[str, float, float]]] = {}
        for text, left, right, y in drawn:
            rows.setdefault(y, []).append((text, left, right))
        across = max(rows.values(), key=len)  # the x axis's row of names
        assert 2 <= len(across) < 10  # some shown, not all: all ten do not fit
        for (_, _, right), (_, left, _) in itertools.pairwise(across):
            assert left - right >= 4, across  # apart, not touching


CHART_WIDTHS_JS = """(names) => names.map((name) => { const view = [...Bokeh.index.find(__find(name))][0];
  return view ? Math.round(view.el.getBoundingClientRect().width) : 0; })"""


def test_a_chart_with_a_long_legend_takes_no_more_width_than_its_neighbour(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Columns sized by their content gave a chart of 33 gradient norms 1,257 px of 1,366, and the loss 109."""
    monitor = monitors("legend", run="legend")
    long_name = "grad_norm/" + "very_long_layer_name_" * 7
    norms = {f"grad_norm/layer_{i:02d}": float(i) for i in range(33)}
    monitor.log({"loss": 1.0, **norms, long_name: 1.0}, step=0)
    viewer = viewers(server.url + "/?run=legend", viewport={"width": 1366, "height": 768})
    viewer.wait_column_length("scalars:legend:grad_norm/layer_32", "step", 1)
    loss, norm = viewer.wait(
        "(names) => { const w = (" + CHART_WIDTHS_JS + ")(names); return w.every((x) => x > 0) ? w : null }",
        ["chart:loss", f"chart:{GRADIENT_NORM}"],
    )
    assert abs(loss - norm) <= 2, (loss, norm)
    assert viewer.page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")  # no sideways
