"""Predictions: what the model outputs on a fixed monitor sample, live.

Classification: mean predicted probability per class beside the true class
frequency (``predictions-classes``), one sample's probabilities chosen with a
slider (``predictions-sample``), a confusion matrix (``predictions-confusion``,
patched in place). Regression: y_true against y_pred with the y = x line
(``predictions-regression``) and a residual histogram
(``predictions-residuals``). An embedding, when sent, is a scatter coloured by
class (``predictions-embedding``). Scatter plots use WebGL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.core.properties import field
from bokeh.layouts import column
from bokeh.models import BasicTicker, ColumnDataSource, FactorRange, LinearColorMapper
from bokeh.models.annotations import Legend, LegendItem, Slope
from bokeh.models.renderers import GlyphRenderer
from bokeh.models.widgets import Slider
from bokeh.palettes import Blues256, Category10_10
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from monitor.dashboard.axes import class_labels_apart
from monitor.dashboard.batch import Batch
from monitor.dashboard.history import Parts, RunHistory
from monitor.dashboard.panels.base import LOADING_TEXT, Panel, Strip, empty_html, empty_state, floats
from monitor.dashboard.theme import Look
from monitor.wire import Predictions

EMPTY_TEXT = (
    "No predictions yet: pass <code>predictions=(x_val, y_val)</code> to <code>MonitorCallback</code> "
    "or call <code>monitor.predictions('validation', y_true, outputs)</code>."
)
COUNTED_CLASSES = 12
"""Up to this many classes the confusion matrix writes each cell's count (more would be unreadable)."""
NO_EMBEDDING_TEXT = (
    "No embedding of the sample: pass <code>embedding_layer='penultimate'</code> (a layer's name) to "
    "<code>MonitorCallback</code>, or <code>monitor.predictions(..., embedding=xy)</code> with 2-D points."
)
RESIDUAL_BINS = 30


class PredictionsPanel(Panel):
    """The latest predictions of the primary run."""

    history = Parts(predictions=True)
    primary_only = True

    def __init__(self, look: Look) -> None:
        self._look = look
        self._run: str | None = None
        self._latest: Predictions | None = None
        self.classes = ColumnDataSource(
            data={"cls": [], "mean_prob": floats([]), "true_freq": floats([])}, name="predictions-classes"
        )
        self.sample = ColumnDataSource(data={"cls": [], "prob": floats([]), "color": []}, name="predictions-sample")
        self.confusion = ColumnDataSource(
            data={"true": [], "pred": [], "count": floats([]), "label": [], "ink": []}, name="predictions-confusion"
        )
        self.regression = ColumnDataSource(
            data={"y_true": floats([]), "y_pred": floats([])}, name="predictions-regression"
        )
        self.residuals = ColumnDataSource(
            data={"left": floats([]), "right": floats([]), "top": floats([])}, name="predictions-residuals"
        )
        self.embedding = ColumnDataSource(
            data={"x": floats([]), "y": floats([]), "label": [], "name": []}, name="predictions-embedding"
        )
        self.slider = Slider(
            title="Sample", start=0, end=1, value=0, step=1, name="predictions-slider", visible=not look.fill
        )
        self.slider.on_change("value", lambda _a, _o, _n: self._draw_sample())
        self._empty = empty_state(look, "predictions-empty", EMPTY_TEXT)
        self._class_figures = self._classification_layout()
        self._regression_figures = self._regression_layout()
        self._embedding_figure = self._embedding_plot()
        self._no_embedding = empty_state(look, "predictions-no-embedding", NO_EMBEDDING_TEXT)
        self.layout = column(
            self._empty,
            self._class_figures,
            self._regression_figures,
            self._embedding_figure,
            self._no_embedding,
            sizing_mode=look.stretch,
            name="predictions",
        )
        self._show(None)

    def loading(self, on: bool) -> None:
        self._empty.text = empty_html(self._look, LOADING_TEXT if on else EMPTY_TEXT)

    def reset(self, runs: Sequence[str]) -> None:
        self._run = runs[0] if runs else None
        self._latest = None
        self._show(None)

    def load(self, history: RunHistory) -> None:
        if history.run == self._run and history.predictions:
            self._draw(history.predictions[-1])

    def update(self, batch: Batch) -> None:
        mine = [p for p in batch.predictions if p.run == self._run]
        if mine:
            self._draw(mine[-1])

    def has_data(self) -> bool:
        return self._latest is not None

    def set_portrait(self, portrait: bool) -> None:
        self._class_strip.set_portrait(portrait)
        self._regression_strip.set_portrait(portrait)

    def advance(self) -> None:
        """Show the next sample's probabilities (after the last, the first): the lab screen's turn."""
        p = self._latest
        if p is not None and p.task == "classification" and len(p.outputs):
            self.slider.value = (int(self.slider.value) + 1) % len(p.outputs)

    def caption(self) -> str:
        p = self._latest
        if p is None or p.task != "classification" or not len(p.outputs):
            return ""
        index = int(min(self.slider.value, len(p.outputs) - 1))
        return f"sample {index} of {len(p.outputs)}"

    def _draw(self, predictions: Predictions) -> None:
        self._latest = predictions
        self._show(predictions)
        if predictions.task == "classification":
            self._draw_classification(predictions)
        else:
            self._draw_regression(predictions)
        if predictions.embedding is not None:
            self._draw_embedding(predictions, predictions.embedding)

    def _draw_embedding(self, p: Predictions, embedding: Any) -> None:
        """The sample's 2-D points, coloured by class and named for the legend, in class order.

        In class order because the legend lists the classes as the page first meets them in the data.
        """
        labels = _labels(p)
        if p.task != "classification":
            order, names = np.arange(len(labels)), [""] * len(labels)
        else:
            order = np.argsort(np.asarray(p.y_true, dtype=np.int64), kind="stable")
            classes = _class_names(p)
            names = [classes[int(i)] if int(i) < len(classes) else i for i in labels]
            grey = {i for i in labels if int(i) >= _COLOURED}  # drawn grey: one legend entry, not one each
            names = [f"{len(grey)} other classes" if i in grey else n for i, n in zip(labels, names, strict=True)]
        self.embedding.data = {
            "x": floats(embedding[order, 0]),
            "y": floats(embedding[order, 1]),
            "label": [labels[i] for i in order.tolist()],
            "name": [names[i] for i in order.tolist()],
        }
        self._embedding_legend.visible = p.task == "classification"

    def _show(self, predictions: Predictions | None) -> None:
        self._empty.visible = predictions is None
        self._class_figures.visible = predictions is not None and predictions.task == "classification"
        self._regression_figures.visible = predictions is not None and predictions.task == "regression"
        self._embedding_figure.visible = predictions is not None and predictions.embedding is not None
        self._no_embedding.visible = (  # how to send one: for a desk, not a lab screen nobody sets up from
            predictions is not None
            and predictions.task == "classification"
            and predictions.embedding is None
            and not self._look.fill
        )

    def _draw_classification(self, p: Predictions) -> None:
        names = _class_names(p)
        n, c = p.outputs.shape
        mean_prob = floats(p.outputs.mean(axis=0))
        true_freq = floats(np.bincount(p.y_true, minlength=c) / max(n, 1))
        if list(self.classes.data["cls"]) == names:
            self.classes.patch({"mean_prob": [(slice(0, c), mean_prob)], "true_freq": [(slice(0, c), true_freq)]})
        else:
            self.classes.data = {"cls": names, "mean_prob": mean_prob, "true_freq": true_freq}
            self._class_range.factors = names
            self._confusion_x.factors = names
            self._confusion_y.factors = names
        counts = np.zeros((c, c))
        np.add.at(counts, (p.y_true, p.outputs.argmax(axis=1)), 1)
        self._draw_confusion(names, counts)
        self.slider.end = max(n - 1, 1)
        self.slider.value = min(self.slider.value, n - 1)
        self._draw_sample()

    def _draw_confusion(self, names: list[str], counts: Any) -> None:
        flat = floats(counts.reshape(-1))
        labels, ink = self._cell_text(flat, len(names))
        if len(self.confusion.data["count"]) == len(flat) and list(self.confusion.data["true"][:: len(names)]) == names:
            whole = slice(0, len(flat))
            self.confusion.patch({"count": [(whole, flat)], "label": [(whole, labels)], "ink": [(whole, ink)]})
        else:
            true = [t for t in names for _ in names]
            pred = [q for _ in names for q in names]
            self.confusion.data = {"true": true, "pred": pred, "count": flat, "label": labels, "ink": ink}

    def _cell_text(self, counts: Any, classes: int) -> tuple[list[str], list[str]]:
        """Each cell's count as text (none for 0, or for more than ``COUNTED_CLASSES`` classes) and its colour.

        The colour contrasts with the cell's: the palette runs from the panel's tone (few) to its
        opposite (many), so the text of a cell past half the largest count takes the panel's tone.
        """
        if classes > COUNTED_CLASSES:
            return [""] * len(counts), [self._look.text] * len(counts)
        strong = "#111111" if self._look.dark else "#ffffff"
        half = float(counts.max()) / 2 if len(counts) else 0.0
        labels = [f"{int(c)}" if c > 0 else "" for c in counts.tolist()]
        return labels, [strong if c > half else self._look.text for c in counts.tolist()]

    def _draw_sample(self) -> None:
        p = self._latest
        if p is None or p.task != "classification" or not len(p.outputs):
            return
        index = int(min(self.slider.value, len(p.outputs) - 1))
        names = _class_names(p)
        truth = int(p.y_true[index])
        colors = ["#2ca02c" if i == truth else "#7f7f7f" for i in range(len(names))]
        self.sample.data = {"cls": names, "prob": floats(p.outputs[index]), "color": colors}

    def _draw_regression(self, p: Predictions) -> None:
        y_true, y_pred = floats(p.y_true).reshape(-1), floats(p.outputs).reshape(-1)
        self.regression.data = {"y_true": y_true, "y_pred": y_pred}
        counts, edges = np.histogram(y_pred - y_true, bins=RESIDUAL_BINS)
        self.residuals.data = {"left": floats(edges[:-1]), "right": floats(edges[1:]), "top": floats(counts)}

    def _classification_layout(self) -> Any:
        size, stretch = self._look.plot_size(260), self._look.stretch
        self._class_range = FactorRange()
        bars = figure(
            **self._look.toolbar(),
            title="mean probability vs truth" if self._look.fill else "mean probability vs true frequency",
            x_range=self._class_range,
            **size,
            tools="hover",
            tooltips=[("class", "@cls"), ("predicted", "@mean_prob{0.000}"), ("true", "@true_freq{0.000}")],
            name="predictions-classes-figure",
        )
        truth = bars.vbar(
            x="cls", top="true_freq", width=0.8, source=self.classes, color=self._look.muted, alpha=0.5
        )  # fmt: skip
        mean = bars.vbar(x="cls", top="mean_prob", width=0.4, source=self.classes, color="#ff7f0e")
        # Below the plot, not in it (inside, it covered the last classes' bars), and not above: the three
        # charts' titles then line up (BokehJS lines up the frames of plots side by side in a grid).
        renderers: list[GlyphRenderer[Any]] = [truth, mean]
        labels = ("true frequency", "mean probability")
        items = [LegendItem(label=label, renderers=[r]) for label, r in zip(labels, renderers, strict=True)]
        bars.add_layout(Legend(items=items, orientation="horizontal", location="top_left"), "below")
        sample = figure(
            **self._look.toolbar(),
            title="one sample (green: true class)",
            x_range=self._class_range,
            **size,
            tools="",
            name="predictions-sample-figure",
        )
        sample.vbar(x="cls", top="prob", width=0.7, color="color", source=self.sample)
        if self._look.fill:  # the lab screen's large labels on its shorter charts: fewer, or they touch
            for fig in (bars, sample):
                fig.yaxis.ticker = BasicTicker(desired_num_ticks=4)
        self._confusion_x, self._confusion_y = FactorRange(), FactorRange()
        confusion = figure(
            **self._look.toolbar(),
            title="confusion: true by predicted" if self._look.fill else "confusion (rows true, columns predicted)",
            x_range=self._confusion_x,
            y_range=self._confusion_y,
            **size,
            tools="hover",
            tooltips=[("true", "@true"), ("predicted", "@pred"), ("count", "@count")],
            name="predictions-confusion-figure",
        )
        # Empty cells in the panel's own tone: white on a light page, dark blue on a dark one.
        mapper = LinearColorMapper(palette=_confusion_palette(self._look), low=0)
        confusion.rect(
            x="pred", y="true", width=1, height=1, source=self.confusion,
            fill_color={"field": "count", "transform": mapper}, line_color=None,
        )  # fmt: skip
        confusion.text(
            x="pred", y="true", text="label", source=self.confusion, text_color="ink", text_align="center",
            text_baseline="middle", text_font_size=self._look.px(11),
        )  # fmt: skip
        class_labels_apart(bars, sample, confusion)
        chosen = column(sample, self.slider, sizing_mode=stretch)  # the slider below: the titles line up
        self._class_strip = Strip(self._look, [bars, chosen, confusion], "predictions-strip")
        return self._class_strip.layout

    def _regression_layout(self) -> Any:
        size = self._look.plot_size(300)
        scatter = figure(
            **self._look.toolbar(),
            title="y_true vs y_pred",
            **size,
            output_backend="webgl",
            x_axis_label="y_true",
            y_axis_label="y_pred",
        )
        scatter.scatter(x="y_true", y="y_pred", source=self.regression, size=4, alpha=0.5)
        scatter.add_layout(Slope(gradient=1, y_intercept=0, line_dash="dashed", line_color="#d62728"))
        residual = figure(**self._look.toolbar(), title="residuals (y_pred - y_true)", **size)
        residual.quad(left="left", right="right", top="top", bottom=0, source=self.residuals, alpha=0.8)
        self._regression_strip = Strip(self._look, [scatter, residual], "regression-strip")
        return self._regression_strip.layout

    def _embedding_plot(self) -> Any:
        fig = figure(
            **self._look.toolbar(),
            title="embedding of the sample",
            **self._look.plot_size(320),
            output_backend="webgl",
        )
        points = fig.scatter(
            x="x",
            y="y",
            source=self.embedding,
            size=5,
            alpha=0.7,
            color=factor_cmap("label", list(Category10_10), [str(i) for i in range(_COLOURED)]),
        )
        # Which colour is which class: one entry per class name, grouped in the page as the data changes.
        renderers: list[GlyphRenderer[Any]] = [points]
        self._embedding_legend = Legend(items=[LegendItem(label=field("name"), renderers=renderers)])
        if self._look.fill:  # ten classes in one column ran off a lab screen's shorter charts
            self._embedding_legend.nrows = 5
        fig.add_layout(self._embedding_legend, "right")
        return fig


_COLOURED = len(Category10_10)  # classes 0-9 get a colour of their own in the embedding


def _class_names(p: Predictions) -> list[str]:
    return list(p.classes) if p.classes else [str(i) for i in range(p.outputs.shape[1])]


def _labels(p: Predictions) -> list[str]:
    if p.task == "classification":
        return [str(int(v)) for v in p.y_true]
    return ["0"] * len(p.y_true)


def _confusion_palette(look: Look) -> tuple[str, ...]:
    """Blues from the panel's tone (few) to the strongest contrast with it (many)."""
    return tuple(Blues256) if look.dark else tuple(Blues256[::-1])
