"""The step x bin heatmap: a live histogram is patched in as one column; the whole image only when it must be."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsPatchedEvent
from bokeh.models import ColumnDataSource

from monitor.dashboard.heatmap import PAD, StepHeatmap
from monitor.dashboard.percentiles import resample_counts
from monitor.wire import Histogram

BINS, KEEP, CAPACITY = 8, 4, 6


def histogram(step: int, low: float = -1.0, high: float = 1.0) -> Histogram:
    edges = np.linspace(low, high, 5)
    counts = np.array([1.0, 2.0, 3.0, float(step)])
    return Histogram("r", 0, "w", step, 0.0, edges, counts, low, high, 0.0, 1.0, int(counts.sum()), 0)


class Recorded:
    """A heatmap in a document, with the document's change events."""

    def __init__(self) -> None:
        self.source = ColumnDataSource(name="weights-heatmap")
        self.heat = StepHeatmap(self.source, BINS, KEEP, CAPACITY)
        self.doc = Document()
        self.doc.add_root(self.source)
        self.events: list[Any] = []
        self.doc.on_change(self.events.append)

    def image(self) -> np.ndarray:
        return np.asarray(self.source.data["image"][0])

    def column_steps(self) -> list[float]:
        """The step at the centre of each image column."""
        x, dw = self.source.data["x"][0], self.source.data["dw"][0]
        return [x + (i + 0.5) * dw / CAPACITY for i in range(CAPACITY)]

    def kinds(self) -> list[str]:
        out = []
        for event in self.events:
            if isinstance(event, ColumnsPatchedEvent):
                out.append("patch")
            elif isinstance(event, ColumnDataChangedEvent):
                out.append("whole")
        return out


def test_a_fitting_histogram_is_patched_in_as_one_column() -> None:
    rec = Recorded()
    shown = [histogram(s) for s in (10, 20, 30)]
    rec.heat.draw(shown)
    image = rec.image()
    assert image.shape == (BINS, CAPACITY)
    grid = np.linspace(-1 - 2 * PAD, 1 + 2 * PAD, BINS + 1)  # the sent range, padded on each side
    for column, h in enumerate(shown):
        assert image[:, column] == pytest.approx(resample_counts(h.edges, h.counts, grid))
    assert np.isnan(image[:, 3:]).all()  # not filled yet: transparent, out of the colour scale
    assert rec.column_steps()[:3] == pytest.approx([10, 20, 30])
    assert (rec.source.data["y"][0], rec.source.data["dh"][0]) == pytest.approx((grid[0], grid[-1] - grid[0]))

    rec.events.clear()
    new = histogram(40, -0.5, 0.9)
    shown.append(new)
    rec.heat.add(new, shown)
    assert rec.kinds() == ["patch"]  # one column, not the whole image again
    assert rec.image()[:, 3] == pytest.approx(resample_counts(new.edges, new.counts, grid))
    assert np.isnan(rec.image()[:, 4:]).all()
    assert rec.column_steps()[:4] == pytest.approx([10, 20, 30, 40])
    for column, h in enumerate(shown[:3]):
        assert rec.image()[:, column] == pytest.approx(resample_counts(h.edges, h.counts, grid))


def test_a_histogram_outside_the_grid_or_a_full_grid_draws_the_whole_image_again() -> None:
    rec = Recorded()
    kept = [histogram(1)]
    rec.heat.draw(kept)
    rec.events.clear()
    wider = histogram(2, -3.0, 1.0)
    kept.append(wider)
    rec.heat.add(wider, kept)
    assert rec.kinds() == ["whole"]
    assert rec.source.data["y"][0] == pytest.approx(-3.0 - 4 * PAD)  # the grid grew to hold it
    assert rec.image()[:, :2].sum(axis=0) == pytest.approx([h.counts.sum() for h in kept])  # no mass dropped

    for step in range(3, 3 + CAPACITY - 2):  # fill every column
        kept.append(histogram(step))
        rec.heat.add(kept[-1], kept)
    assert not np.isnan(rec.image()).any()
    assert rec.kinds() == ["whole"] + ["patch"] * (CAPACITY - 2)
    rec.events.clear()
    kept.append(histogram(3 + CAPACITY - 2))
    rec.heat.add(kept[-1], kept)  # no free column: the newest KEEP drawn, CAPACITY - KEEP free again
    assert rec.kinds() == ["whole"]
    assert rec.column_steps()[:KEEP] == pytest.approx([h.step for h in kept[-KEEP:]])
    assert np.isnan(rec.image()[:, KEEP:]).all()
    assert not np.isnan(rec.image()[:, :KEEP]).any()


def test_nothing_to_show_is_an_empty_image_and_a_first_histogram_is_drawn_whole() -> None:
    rec = Recorded()
    rec.heat.draw([])
    assert np.isnan(rec.image()).all()
    first = histogram(5)
    rec.heat.add(first, [first])
    assert rec.kinds()[-1] == "whole"
    assert rec.column_steps()[0] == pytest.approx(5)
    with pytest.raises(ValueError, match="keep"):
        StepHeatmap(ColumnDataSource(), BINS, CAPACITY + 1, CAPACITY)


def test_a_restart_from_a_checkpoint_starts_the_image_again_and_non_finite_histograms_are_left_out() -> None:
    rec = Recorded()
    kept = [histogram(s) for s in (10, 20, 30)]
    rec.heat.draw(kept)
    bad = Histogram("r", 0, "w", 40, 0.0, np.array([-1.0, np.nan, 1.0]), np.array([1.0, 1.0]), -1, 1, 0, 1, 2, 0)
    rec.events.clear()
    rec.heat.add(bad, [*kept, bad])
    assert rec.kinds() == []  # nothing drawn: one NaN edge would blank the whole grid
    rec.heat.draw([*kept, bad])
    assert not np.isnan(rec.image()[:, :3]).any() and np.isnan(rec.image()[:, 3:]).all()
    restarted = histogram(15)  # the run went back to step 15
    kept.append(restarted)
    rec.events.clear()
    rec.heat.add(restarted, kept)
    assert rec.kinds() == ["whole"]
    assert rec.column_steps()[0] == pytest.approx(15)  # from the restart on
    assert np.isnan(rec.image()[:, 1:]).all()
    kept.append(histogram(25))
    rec.heat.add(kept[-1], kept)
    assert rec.kinds() == ["whole", "patch"]
    assert rec.column_steps()[:2] == pytest.approx([15, 25])
