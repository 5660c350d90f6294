"""The header: run picker, status badge, progress, speed, ETA and data age.

Values are separate ``Div`` models named ``header-<what>`` so a lab screen
(and a test) can read each one. The status turns ``stale`` when the run has
sent nothing for the server's stale time; the age of the last data counts
up every second so a dead run is obvious across a room. Step, speed and ETA
follow live data at most every ``PROGRESS_REFRESH`` seconds (and on the
once-a-second tick): each changed ``Div`` is one more message per flush for
the server to build and for the page to lay out, and a counter read by
people needs no more.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import CustomJS
from bokeh.models.widgets import Div, MultiChoice

from monitor.dashboard.batch import Batch
from monitor.dashboard.directory import RunDirectory
from monitor.dashboard.history import Parts, RunHistory
from monitor.dashboard.panels.base import Array, Panel
from monitor.dashboard.progress import ETA_WINDOW, SPEED_WINDOW, Progress
from monitor.dashboard.theme import Look, widget_stylesheets

PROGRESS_REFRESH = 0.5
SEARCH_MATCHES = 50
"""Most runs the picker lists for what is typed in it."""
_ADDRESS_JS = """
const url = new URL(window.location.href);
url.searchParams.delete("run");
for (const run of cb_obj.tags) url.searchParams.append("run", run);
if (url.href !== window.location.href) window.history.replaceState(window.history.state, "", url.href);
"""
"""The page's address names the runs picked, so that a reload (the watchdog's, after the server comes back,
or a refresh) shows them again instead of the ones the page was first opened on. Run by ``name_in_address``
(through the picker's ``tags``), for picks alone: a page opened at ``/`` shows the newest run, and naming
that one in its address would keep a reload on it."""
_SAMPLE_RATE_NAMES = ("samples_per_sec", "samples_per_second", "samples/s", "examples_per_sec", "throughput")
_TOTAL_KEYS = ("total_steps", "max_steps", "num_steps", "steps")
NO_RUNS_TEXT = (
    "No runs yet: start a producer with <code>Monitor(url='ws://HOST:PORT/ws/ingest')</code> "
    "or add <code>MonitorCallback</code> to <code>model.fit</code>."
)


def format_age(seconds: float | None) -> str:
    """``"3s"``, ``"4m 05s"``, ``"2h 10m"``, from two days ``"3d 04h"``; ``"-"`` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 2 * 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"  # a finished or imported run: not "26671h 07m"


def total_steps(config: dict[str, Any]) -> int | None:
    """The run's planned number of steps from its config, if it says."""
    for key in _TOTAL_KEYS:
        if isinstance(config.get(key), int) and config[key] > 0:
            return int(config[key])
    epochs, per_epoch = config.get("epochs"), config.get("steps_per_epoch")
    if isinstance(epochs, int) and isinstance(per_epoch, int) and epochs > 0 and per_epoch > 0:
        return epochs * per_epoch
    return None


class HeaderPanel(Panel):
    """Status and progress of the primary run, plus the run picker."""

    history = Parts(scalars=None)
    """The primary run's progress is read from its scalars alone."""
    primary_only = True
    """For its history: the progress shown is the primary run's (the picker lists every run from the run list)."""

    def __init__(self, look: Look, directory: RunDirectory, on_pick: Callable[[list[str]], None], kiosk: bool) -> None:
        self._look, self._directory, self._kiosk = look, directory, kiosk
        self._run: str | None = None
        self._seen_version = -1
        self._progress = Progress()
        self._epoch: float | None = None
        self._sample_rate: float | None = None
        self._rendered_at = -math.inf
        self.picker = MultiChoice(
            options=[], value=[], placeholder="pick runs to show", name="run-picker", width=420, visible=not kiosk,
            search_option_limit=SEARCH_MATCHES,  # BokehJS shows 4: 4 of 69 runs matching "resnet50"
            # At most about two rows of picked runs, then a scroll bar: each pick past them made the
            # header taller and moved the runs table under the pointer between two clicks.
            stylesheets=[*widget_stylesheets(look), ".choices__inner { max-height: 4.8em; overflow-y: auto; }"],
        )  # fmt: skip
        self.picker.on_change("value", lambda _a, _o, new: on_pick(list(new)))
        if not kiosk:  # the lab screen follows the newest run: an address naming one would pin it
            self.picker.js_on_change("tags", CustomJS(code=_ADDRESS_JS))
        names = ("run", "status", "step", "epoch", "speed", "eta", "age")
        self.divs = {n: Div(text="", name=f"header-{n}", styles=self._style(n), disable_math=True) for n in names}
        self.divs["run"].text = NO_RUNS_TEXT
        stats = row(*(self.divs[n] for n in names[2:]), sizing_mode="stretch_width")
        stats.styles = {"flex-wrap": "wrap"}  # a narrow window takes the values on two lines, not off its edge
        self.layout = column(
            row(self.divs["status"], self.divs["run"], self.picker), stats, sizing_mode="stretch_width", name="header"
        )

    def name_in_address(self, runs: Sequence[str]) -> None:
        """Put ``runs``, which the user picked, in the desk page's address; the lab screen's is left alone."""
        if not self._kiosk:
            self.picker.tags = list(runs)

    def reset(self, runs: Sequence[str]) -> None:
        self._run = runs[0] if runs else None
        self._progress = Progress()
        self._epoch = self._sample_rate = None
        if list(self.picker.value) != list(runs):
            self.picker.value = list(runs)
        self._seen_version = -1
        self.tick(time.time())

    def compare(self, runs: Sequence[str]) -> bool:
        if runs[:1] != [self._run]:  # another primary: its progress is read again (reset)
            return False
        if list(self.picker.value) != list(runs):
            self.picker.value = list(runs)
        self._seen_version = -1  # the options again, the picked runs first in the order picked (see tick)
        self.tick(time.time())
        return True

    def load(self, history: RunHistory) -> None:
        if history.run != self._run:
            return
        for name, series in history.scalars.items():
            if len(series.wall):  # the points of the last ETA_WINDOW (the history holds at most ~2,000 per series)
                recent = series.wall >= series.wall[-1] - ETA_WINDOW
                self._note(name, series.steps[recent], series.wall[recent], series.values[recent], every=True)
                self._progress.note(series.steps[:1], series.wall[:1])  # the run's first step, maybe older
        self._render_progress()

    def update(self, batch: Batch) -> None:
        for message in batch.scalars:
            if message.run == self._run:
                for index, name in enumerate(message.names):
                    mask = message.index == index
                    self._note(name, message.steps[mask], message.wall[mask], message.values[mask])
        if time.monotonic() - self._rendered_at >= PROGRESS_REFRESH:
            self._render_progress()

    def tick(self, now: float) -> None:
        if self._directory.version != self._seen_version:
            self._seen_version = self._directory.version
            # Escaped: BokehJS 3.9's picker (Choices.js) renders a label as HTML, so a run named
            # "<img onerror=...>" ran script in every open dashboard.
            ids = [row.info.id for row in self._directory.rows()]
            # The picked runs first, in the order picked: Choices.js shows its tags in the options' order,
            # which put the primary run (the first picked) last when it was the oldest.
            picked = [run for run in self.picker.value if run in ids]
            ids = picked + [run for run in ids if run not in picked]
            self.picker.options = [(run, html.escape(self._directory.label(run))) for run in ids]
        info = self._directory.get(self._run) if self._run else None
        status = self._directory.status(self._run, now) if self._run else None
        self._set("status", self._badge(status))
        if self._run is None:
            self._set("run", NO_RUNS_TEXT)
        else:
            self._set(
                "run",
                f"<b>{html.escape((info.name if info else '') or self._run)}</b> "
                f"<span style='color:{self._look.muted}'>{html.escape(info.project if info else '')}</span>",
            )
        age = now - info.last_seen if info else None
        text = f"last data {format_age(age)} ago" if age is not None else "no data yet"
        if status == "stale":  # in the badge's colour, so a silent run reads as one across a room
            text = f"<span style='color:{self._look.status_color(status)};font-weight:700'>{text}</span>"
        self._set("age", text)
        self._render_progress()

    def _note(self, name: str, steps: Array, walls: Array, values: Array, every: bool = False) -> None:
        if not len(steps):
            return
        if name == "epoch":
            self._epoch = float(values[-1])
        elif name in _SAMPLE_RATE_NAMES:
            self._sample_rate = float(values[-1])
        self._progress.note(steps, walls, every)

    def _render_progress(self) -> None:
        self._rendered_at = time.monotonic()
        info = self._directory.get(self._run) if self._run else None
        status = self._directory.status(self._run) if self._run else None
        running = status == "running"  # a stale or ended run has no speed and no ETA, not its last ones
        total = total_steps(info.config) if info else None
        step = f"{self._progress.step:,}" if self._progress.step is not None else "-"
        complete = status == "finished" and total is not None and (self._progress.done() or 0) >= total
        of_total = f" / {total:,}" if total and not complete else ""  # steps 0..299 of 300: not "299 / 300"
        self._set("step", f"step <b>{step}</b>{of_total}")
        self._set("epoch", f"epoch <b>{self._epoch:g}</b>" if self._epoch is not None else "")
        rate = self._progress.rate(SPEED_WINDOW) if running else None
        self._set("speed", self._speed_text(rate, info.config if info else {}))
        done = self._progress.done()
        left = total - done if total and done is not None else 0
        overall = self._progress.rate(ETA_WINDOW) if running else None
        eta = left / overall if left > 0 and overall and overall > 0 else None
        self._set("eta", f"ETA <b>{format_age(eta)}</b>" if eta is not None else "")

    def _speed_text(self, rate: float | None, config: dict[str, Any]) -> str:
        if rate is None:
            return ""
        batch = config.get("batch_size")  # steps/s times the batch, so the two agree over the same window
        samples = rate * batch if isinstance(batch, int) and batch > 0 else self._sample_rate
        text = f"<b>{rate:,.1f}</b> steps/s"
        return text + (f" · <b>{samples:,.0f}</b> samples/s" if samples is not None else "")

    def _badge(self, status: str | None) -> str:
        color = self._look.status_color(status)  # type: ignore[arg-type]
        size = self._look.px(28 if self._kiosk else 14)
        label = (status or "no run").upper()
        style = f"background:{color};color:white;padding:2px 12px;border-radius:6px;font-size:{size};font-weight:700"
        return f"<span style='{style}'>{label}</span>"

    def _set(self, name: str, text: str) -> None:
        if self.divs[name].text != text:
            self.divs[name].text = text

    def _style(self, name: str) -> dict[str, str | None]:
        big = name in ("age", "status") and self._kiosk
        return {"font-size": self._look.px(26 if big else 16), "color": self._look.text, "margin-right": "24px"}
