"""The dashboard in real headless Chromium against a real server and real producers.

Every value is read back from the page's own Bokeh models
(``Bokeh.documents[0]``); every wait is on a condition.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import monitor.dashboard.session as session_module
from monitor.wire import Scalars
from producers.client import Monitor
from tests.dashboard.conftest import FIND_JS, READY_JS, Viewer
from tests.serving import ServerThread

pytestmark = pytest.mark.browser
SELECT_JS = "(runs) => { __find('run-picker').value = runs; return true }"


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` (a cheap read of server state) until truthy or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        threading.Event().wait(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def subscribers(server: ServerThread) -> int:
    return server.call(lambda: server.running.hub.subscriber_count)


def test_empty_server_says_what_is_missing(server: ServerThread, viewers: Callable[..., Viewer]) -> None:
    viewer = viewers(server.url + "/")
    assert "No runs yet" in (viewer.text("header-run") or "")
    assert "No training curves yet" in (viewer.text("curves-empty") or "")
    assert "No events yet" in (viewer.text("events") or "")


def test_curves_header_events_and_runs_show_pushed_values(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("alpha", config={"total_steps": 1000, "batch_size": 32})
    for step in range(20):
        monitor.log({"loss": 1.0 / (step + 1), "val_loss": 2.0 / (step + 1), "epoch": step // 10}, step=step)
    viewer = viewers(server.url + "/?run=alpha")
    assert viewer.wait_column_length("scalars:alpha:loss", "step", 20) == list(range(20))
    assert viewer.column("scalars:alpha:loss", "value") == pytest.approx([1.0 / (s + 1) for s in range(20)])
    speed = viewer.wait("() => { const t = __find('header-speed').text; return t.includes('steps/s') ? t : null }")
    assert "<b>0.0</b> steps/s" not in speed, "the rate from the loaded history"

    for step in range(20, 25):
        monitor.log({"loss": 1.0 / (step + 1), "val_loss": 2.0 / (step + 1)}, step=step)
    monitor.event("checkpoint saved", level="info")
    assert viewer.wait_column_length("scalars:alpha:val_loss", "step", 25)[-5:] == [20, 21, 22, 23, 24]
    assert (viewer.column("scalars:alpha:val_loss", "value") or [None])[-1] == pytest.approx(2.0 / 25)
    viewer.wait_text("header-step", "<b>24</b> / 1,000")
    viewer.wait_text("header-status", "RUNNING")
    viewer.wait_text("events", "checkpoint saved")
    viewer.wait_text("header-epoch", "epoch <b>1</b>")
    viewer.wait_text("header-eta", "ETA")
    viewer.show("Runs")
    viewer.wait("() => Array.from(__find('runs-table').data.name).includes('alpha')")
    assert viewer.wait("() => __find('runs-table').data.best_of[0]") in ("loss", "val_loss")

    monitor.finish()
    viewer.wait_text("header-status", "FINISHED")
    viewer.wait("() => __find('header-eta').text === ''")  # an ended run has no ETA
    viewer.wait("() => __find('header-speed').text === ''")  # nor a speed: it is not going any more
    assert viewer.text("header-step") == "step <b>24</b> / 1,000"  # it stopped early
    viewer.wait_text("events", "run finished")
    viewer.wait("() => __find('runs-table').data.status[0] === 'finished'")
    # On screen too: the row is patched in place (same rows), which BokehJS 3.9 alone does not redraw.
    viewer.page.locator(".slick-cell", has_text=re.compile(r"^finished$")).first.wait_for(timeout=30_000)


def test_two_tabs_both_receive_every_update(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("shared")
    monitor.log({"loss": 1.0}, step=0)
    tabs = [viewers(server.url + "/?run=shared") for _ in range(2)]
    for tab in tabs:
        tab.wait_column_length("scalars:shared:loss", "step", 1)
    for step in range(1, 40):
        monitor.log({"loss": float(step)}, step=step)
    for tab in tabs:
        assert tab.wait_column_length("scalars:shared:loss", "step", 40) == list(range(40))
        assert tab.column("scalars:shared:loss", "value") == [1.0, *map(float, range(1, 40))]


def test_run_switch_and_compare(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    first, second = monitors("first"), monitors("second")
    first.log({"loss": 1.0, "accuracy": 0.5}, step=0)
    second.log({"loss": 3.0}, step=0)
    viewer = viewers(server.url + "/?run=first")
    viewer.wait_column_length("scalars:first:loss", "step", 1)
    assert viewer.column("scalars:second:loss", "step") is None

    viewer.page.evaluate(SELECT_JS, ["first", "second"])
    assert viewer.wait_column_length("scalars:second:loss", "value", 1) == [3.0]
    second.log({"loss": 2.0}, step=1)
    first.log({"loss": 0.5}, step=1)
    assert viewer.wait_column_length("scalars:second:loss", "value", 2) == [3.0, 2.0]
    assert viewer.wait_column_length("scalars:first:loss", "value", 2) == [1.0, 0.5]
    viewer.show("Runs")
    viewer.wait("() => __find('runs-table').selected.indices.length === 2")
    viewer.show("Weights")  # a tab that shows one run says which, and that the curves show both
    note = viewer.wait("() => { const m = __find('primary-run'); return m && m.visible ? m.text : null }")
    assert "Comparing 2 runs" in note and "<b" in note and ">first</b>" in note
    viewer.wait_text("weights-empty", "No weight histograms yet")  # "Loading…" until the history is drawn

    viewer.show("Training")
    kept = viewer.page.evaluate("() => __find('scalars:second:loss').id")
    viewer.page.evaluate(SELECT_JS, ["second"])  # the first run dropped: the second is kept, now primary
    viewer.wait("() => __find('scalars:first:loss') === null")
    viewer.wait_text("header-run", "second")
    assert viewer.wait_column_length("scalars:second:loss", "value", 2) == [3.0, 2.0]
    assert viewer.page.evaluate("() => __find('scalars:second:loss').id") == kept  # not read and sent again
    viewer.wait("() => !__find('legend:loss').text.includes('second · ')")  # one run: lines named by series
    viewer.show("Weights")  # a one-run tab now shows the second run: no note, its own empty state
    viewer.wait("() => { const m = __find('primary-run'); return m !== null && !m.visible }")
    viewer.wait_text("weights-empty", "No weight histograms yet")


CHART_JS = """(name) => { const fig = __find('chart:' + name);
  if (fig === null) return null;
  const smooth = fig.renderers.filter((r) => r.name);
  return {id: fig.id, lines: fig.renderers.length, colors: smooth.map((r) => [r.name, r.glyph.line_color])} }"""


def test_a_run_added_to_a_comparison_and_dropped_again_keeps_the_charts_on_the_page(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """Adding a run reads and draws that run alone; the charts and the shown run's lines stay as they are.

    Before, every run shown was read and drawn again, in new figures: 3-9 s of a page's time to add a
    sixth run to a comparison of 25 charts.
    """
    first, second = monitors("first"), monitors("second")
    first.log({"loss": 1.0, "accuracy": 0.5}, step=0)
    second.log({"loss": 3.0}, step=0)
    viewer = viewers(server.url + "/?run=first")
    viewer.wait_column_length("scalars:first:loss", "step", 1)
    alone = viewer.page.evaluate(CHART_JS, "loss")
    source = viewer.page.evaluate("() => __find('scalars:first:loss').id")
    assert alone["lines"] == 2

    viewer.page.evaluate(SELECT_JS, ["first", "second"])
    assert viewer.wait_column_length("scalars:second:loss", "value", 1) == [3.0]
    both = viewer.wait(f"() => {{ const c = ({CHART_JS})('loss'); return c && c.lines === 4 ? c : null }}")
    assert both["id"] == alone["id"]  # the same figure, the added run's lines drawn into it
    assert viewer.page.evaluate("() => __find('scalars:first:loss').id") == source  # kept, not sent again
    colors = dict(both["colors"])
    assert set(colors) == {"first · loss", "second · loss"} and colors["first · loss"] != colors["second · loss"]
    viewer.wait_text("legend:loss", "second · loss")
    second.log({"loss": 2.0}, step=1)
    first.log({"loss": 0.5}, step=1)
    assert viewer.wait_column_length("scalars:second:loss", "value", 2) == [3.0, 2.0]
    assert viewer.wait_column_length("scalars:first:loss", "value", 2) == [1.0, 0.5]

    viewer.wait("() => __find('chart:loss').y_range.end > 3")  # fitted to both runs' values

    viewer.page.evaluate(SELECT_JS, ["first"])
    viewer.wait("() => __find('scalars:second:loss') === null")
    viewer.wait("() => __find('chart:loss').y_range.end < 2")  # refitted to the run left (stayed past 3)
    again = viewer.wait(f"() => {{ const c = ({CHART_JS})('loss'); return c && c.lines === 2 ? c : null }}")
    assert again["id"] == alone["id"] and again["colors"] == alone["colors"]
    assert viewer.page.evaluate("() => __find('scalars:first:loss').id") == source
    assert viewer.column("scalars:first:loss", "value") == [1.0, 0.5]
    viewer.wait("() => !__find('legend:loss').text.includes('second')")


def test_a_run_dropped_from_a_comparison_while_its_history_loads_is_not_drawn(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """The server's read executor is held busy, so the dropped run's history arrives after the drop."""
    runs = {name: monitors(name) for name in ("base", "dropped", "third")}
    for monitor in runs.values():
        monitor.log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=base")
    viewer.wait_column_length("scalars:base:loss", "step", 1)
    gate = threading.Event()
    try:
        busy = [server.running.executor.submit(gate.wait, 30) for _ in range(4)]
        viewer.page.evaluate(SELECT_JS, ["base", "dropped"])
        viewer.wait("() => __find('legend:loss') !== null && __find('legend:loss').text.includes('base · loss')")
        viewer.page.evaluate(SELECT_JS, ["base"])
        viewer.wait("() => !__find('legend:loss').text.includes('base · loss')")
    finally:
        gate.set()
    assert all(f.result(10) for f in busy)
    # Every worker in a task queued after the dropped run's load: that load is done, and its drawing
    # (if it were drawn) queued on the loop before the point logged next.
    workers = len(busy)
    barrier = threading.Barrier(workers + 1, timeout=30)
    after = [server.running.executor.submit(barrier.wait) for _ in range(workers)]
    barrier.wait()
    assert all(f.result(10) is not None for f in after)
    runs["base"].log({"loss": 2.0}, step=1)
    viewer.wait_column_length("scalars:base:loss", "step", 2)
    assert viewer.column("scalars:dropped:loss", "step") is None  # fails before: its history was drawn
    assert "dropped" not in viewer.page.evaluate("() => __find('legend:loss').text")
    viewer.page.evaluate(SELECT_JS, ["base", "third"])  # and a run picked next is drawn as ever
    viewer.wait_column_length("scalars:third:loss", "step", 1)
    viewer.wait_text("legend:loss", "third · loss")


def test_the_address_names_the_runs_picked_so_a_reload_shows_them_again(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """A page reloaded (by its watchdog after a restart, or by hand) went back to the runs it was opened on.

    The run a page at ``/`` shows by itself (the newest) is not named: a reload shows the newest then.
    """
    for name in ("first", "second"):
        monitors(name).log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?tab=Training")
    shown = viewer.wait("() => { const v = __find('run-picker')?.value; return v?.length === 1 ? v[0] : null }")
    viewer.wait_column_length(f"scalars:{shown}:loss", "step", 1)  # the newest (started the same second here)
    assert viewer.page.evaluate("() => location.search") == "?tab=Training"
    picked = ["first", "second"] if shown == "second" else ["second", "first"]  # the other one first
    viewer.page.evaluate(SELECT_JS, picked)
    viewer.wait("() => location.search.includes('run=')")
    assert viewer.page.evaluate("() => location.search") == f"?tab=Training&run={picked[0]}&run={picked[1]}"
    viewer.page.reload()
    viewer.page.wait_for_function(READY_JS)
    viewer.page.evaluate(FIND_JS)
    after_reload = "() => { const v = __find('run-picker')?.value; return v?.length === 2 ? v : null }"
    assert viewer.wait(after_reload) == picked


def test_history_and_live_meet_without_gap_or_duplicate(
    server: ServerThread,
    viewers: Callable[..., Viewer],
    monitors: Callable[..., Monitor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tab opened on a fast stream: a decimated history, then every live point after it, once.

    The session's history read, once called, waits until 300 more points
    are stored (points the session has also been sent live since it started
    following the run), reads, and returns once 300 more are stored (points
    sent live only). The seam must drop the first kind and draw the second.
    The producer streams until then, however slow the machine.
    """
    opened_past = 2500  # over 2,000 points when the tab opens: a decimated history
    seams: list[tuple[int, int, int | None]] = []
    real_seam, real_load = session_module.after_history, session_module.load_history

    def watched(messages: list[Any], history: Any) -> list[Any]:  # the real seam, watched
        kept = real_seam(messages, history)
        points = [sum(len(m.steps) for m in ms if isinstance(m, Scalars)) for ms in (messages, kept)]
        seams.append((points[0], points[1], history.last_scalar_step("loss")))
        return kept

    progress, held, passed, started = [0], [0, 0], threading.Event(), threading.Event()

    def stored_past(store: Any, run: str) -> int:
        target = progress[0] + 300
        wait_until(lambda: (store.get_run(run).last_step or 0) >= target, what="300 more points stored")
        return target

    def load_later(store: Any, run: str, *args: Any) -> Any:  # the real read, while the stream goes on
        held[0] = stored_past(store, run)  # points both sent live and read
        history = real_load(store, run, *args)
        held[1] = stored_past(store, run)  # points sent live only, after the read
        passed.set()
        return history

    monkeypatch.setattr(session_module, "after_history", watched)
    monkeypatch.setattr(session_module, "load_history", load_later)
    monitor = monitors("fast")

    def produce() -> None:
        step, stop = 0, 60_000  # a bound, if the read never comes
        while step < stop:
            monitor.log({"loss": float(step)}, step=step)
            progress[0] = step
            if step == opened_past:
                started.set()
            stop = min(stop, step + 200) if passed.is_set() else stop
            if step % 10 == 0:
                threading.Event().wait(0.002)  # ~5,000 points/s
            step += 1

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert started.wait(10)
        viewer = viewers(server.url + "/?run=fast")
    finally:
        producer.join()
    total = progress[0] + 1
    assert passed.is_set(), "the tab never read the run's history"
    viewer.wait(f"() => __find('scalars:fast:loss')?.data.step.at(-1) === {total - 1}", timeout=30_000)
    steps = [int(s) for s in viewer.column("scalars:fast:loss", "step") or []]
    assert viewer.column("scalars:fast:loss", "value") == [float(s) for s in steps]
    assert all(a < b for a, b in itertools.pairwise(steps)), "a step drawn twice or out of order"
    [(buffered, kept, history_end)] = seams
    assert history_end is not None and held[0] <= history_end < held[1], "the read came between the two waits"
    assert buffered > kept > 0, "no live point buffered during the read was in the history, or none after it"
    seam = steps.index(history_end)
    assert seam < 2100, "the history is decimated to about 2,000 points"
    assert steps[seam:] == list(range(history_end, total)), "a gap after the history"
    assert steps[0] == 0


def test_a_tab_first_opened_while_streaming_continues_without_gap_or_duplicate(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    """A hidden tab's panel is built when first opened and loads its own history; its seam must hold too.

    The server's read executor is kept busy while the tab opens, so the
    panel's history load waits while live points keep arriving for it.
    """
    total = 1500
    monitor = monitors("late")
    monitor.histogram("dense/kernel", (np.linspace(-1, 1, 5), np.array([1.0, 2.0, 3.0, 4.0])), step=0)
    viewer = viewers(server.url + "/?run=late")
    progress = [0]
    started = threading.Event()

    def produce() -> None:
        for step in range(total):
            monitor.log({"norm/dense/kernel": float(step)}, step=step)
            progress[0] = step
            if step == 300:
                started.set()
            threading.Event().wait(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    gate = threading.Event()
    try:
        started.wait(10)
        assert viewer.column("weights-norm", "step") is None, "the Weights tab's panel is not in the page yet"
        busy = [server.running.executor.submit(gate.wait, 30) for _ in range(4)]
        viewer.show("Weights")
        opened_at = progress[0]
        wait_until(lambda: progress[0] >= opened_at + 200, what="points streamed while the history load waits")
        gate.set()
        assert all(f.result(10) for f in busy)
        steps = viewer.wait_column_length("weights-norm", "step", total, timeout=30_000)
    finally:
        gate.set()
        producer.join()
    missing, repeated = sorted(set(range(total)) - set(steps)), len(steps) - len(set(steps))
    assert steps == list(range(total)), f"missing {missing[:10]}, repeated {repeated}, opened at step {opened_at}"
    assert viewer.column("weights-norm", "value") == [float(s) for s in range(total)]


def test_closed_tab_leaves_the_hub(
    server: ServerThread, browser: Any, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitors("watched").log({"loss": 1.0}, step=0)
    viewers(server.url + "/?run=watched").wait_column_length("scalars:watched:loss", "step", 1)
    before = subscribers(server)
    context = browser.new_context()
    try:
        viewer = Viewer(context.new_page(), []).open(server.url + "/?run=watched")
        viewer.wait_column_length("scalars:watched:loss", "step", 1)
        assert subscribers(server) == before + 1
    finally:
        context.close()
    wait_until(lambda: subscribers(server) == before, timeout=15, what="the closed tab to unsubscribe")


def test_a_run_counting_from_zero_is_complete_at_its_last_step(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("complete", config={"total_steps": 5})
    for step in range(5):
        monitor.log({"loss": 1.0}, step=step)
    viewer = viewers(server.url + "/?run=complete")
    viewer.wait_text("header-step", "<b>4</b> / 5")
    monitor.finish()
    viewer.wait_text("header-status", "FINISHED")
    viewer.wait("() => __find('header-step').text === 'step <b>4</b>'")  # steps 0..4 are all 5: not "4 / 5"


def test_kiosk_follows_a_newly_started_run(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitors("old-run").log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?kiosk=1")
    viewer.wait_text("header-run", "old-run")
    newer = monitors("new-run")
    newer.log({"loss": 5.0}, step=0)
    viewer.wait_text("header-run", "new-run")
    assert viewer.wait_column_length("scalars:new-run:loss", "value", 1) == [5.0]
    assert viewer.page.evaluate("() => location.search") == "?kiosk=1"  # a reload follows the newest run still
    toolbars = viewer.page.evaluate(
        "() => [...Bokeh.documents[0]._all_models.values()]"
        ".filter((m) => m.properties && 'toolbar_location' in m.properties).map((m) => m.toolbar_location)"
    )
    assert toolbars and set(toolbars) == {None}, toolbars  # a lab screen shows charts, not tools


def test_page_reloads_itself_after_server_restart(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    allowed = ("ERR_CONNECTION_REFUSED", "WebSocket", "websocket", "Lost websocket")
    monitors("durable").log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=durable", allowed_errors=allowed)
    viewer.wait_column_length("scalars:durable:loss", "step", 1)
    viewer.page.evaluate("() => { window.__before_restart = true }")
    server.restart()
    viewer.wait(
        "() => window.__before_restart === undefined && window.Bokeh !== undefined && Bokeh.documents.length > 0",
        timeout=45_000,
    )
    viewer.page.evaluate(FIND_JS)
    assert viewer.wait_column_length("scalars:durable:loss", "value", 1) == [1.0]


def test_a_page_kept_busy_past_the_stall_time_is_not_taken_for_disconnected(
    server: ServerThread,
    viewers: Callable[..., Viewer],
    monitors: Callable[..., Monitor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page of 25 charts was busy for 5-8 s at a time; its watchdog, ticking late behind that work, found no
    new heartbeat, took the connection for dead and reloaded the page three times a minute. Here the page is
    kept busy in 2.5 s stretches for 25 s with its heartbeat hidden, so only the late ticks tell it apart."""
    monkeypatch.setattr("monitor.dashboard.template.STALL_MS", 2000)
    monitors("busy").log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=busy")
    viewer.wait_column_length("scalars:busy:loss", "step", 1)
    viewer.page.evaluate("""async () => {
      window.__before = true;
      __find('heartbeat').name = 'hidden-beat';
      for (let i = 0; i < 10; i++) {
        const t = Date.now();
        while (Date.now() - t < 2500);
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      __find('hidden-beat').name = 'heartbeat';
    }""")  # a reload meanwhile fails this call: its page is gone
    beat = int(viewer.text("heartbeat") or 0)
    viewer.wait("(n) => Number(__find('heartbeat')?.text) >= n", beat + 3)  # beats seen again, on time
    assert viewer.page.evaluate("() => window.__before === true && document.documentElement.dataset.connection")
    assert viewer.page.evaluate("() => document.documentElement.dataset.connection") == "open"  # never lost


def test_a_page_whose_connection_goes_silent_reloads_itself(
    server: ServerThread,
    viewers: Callable[..., Viewer],
    monitors: Callable[..., Monitor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A half-open socket never reports itself closed: the server answers, and this page hears nothing."""
    monkeypatch.setattr("monitor.dashboard.template.STALL_MS", 2000)
    monitors("silent").log({"loss": 1.0}, step=0)
    viewer = viewers(server.url + "/?run=silent")
    cut = threading.Event()
    connections: list[object] = []

    def route(socket: Any) -> None:  # Bokeh's websocket, through playwright; the first one goes silent on cue
        upstream = socket.connect_to_server()
        first = not connections
        connections.append(socket)
        socket.on_message(upstream.send)
        upstream.on_message(lambda message: None if first and cut.is_set() else socket.send(message))

    viewer.page.route_web_socket(re.compile(r"/ws(\?|$)"), route)
    viewer.page.reload()
    viewer.page.wait_for_function(READY_JS)
    viewer.page.evaluate(FIND_JS)
    viewer.wait_column_length("scalars:silent:loss", "step", 1)
    viewer.page.evaluate("() => { window.__before = true }")
    cut.set()
    viewer.wait("() => window.__before === undefined && window.Bokeh !== undefined && Bokeh.documents.length > 0",
                timeout=45_000)  # fmt: skip
    viewer.page.evaluate(FIND_JS)
    assert viewer.wait_column_length("scalars:silent:loss", "value", 1) == [1.0]
    assert len(connections) == 2


STRIP_WIDTHS_JS = """(name) => { const view = [...Bokeh.index.find(__find(name))][0];
  const widths = view ? view.child_views.map((child) => child.el.getBoundingClientRect().width) : [];
  return widths.length && widths.every((w) => w > 0) ? widths : null }"""
TICK_LABELS_JS = """([figure, side, ticks]) => __find(figure)[side][0].formatter.doFormat(ticks, {loc: 0})"""


def test_weights_predictions_data_and_model_panels_show_pushed_values(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    rng = np.random.default_rng(0)
    monitor = monitors("panels")
    monitor.log({"loss": 1.0, "norm/dense/kernel": 2.5}, step=0)
    monitor.histogram("dense/kernel", (np.linspace(-1, 1, 5), np.array([1.0, 2.0, 3.0, 4.0])), step=0)
    y_true = np.array([0, 1, 2, 1])
    outputs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    monitor.predictions("validation", y_true, outputs, step=0, classes=["cat", "dog", "eel"])
    features = rng.normal(size=(200, 2))
    monitor.data_summary(
        features, labels=rng.integers(0, 3, 200), feature_names=["height", "width"], label_names=["a", "b", "c"]
    )
    monitor.data_summary(rng.random((50, 1)), feature_names=["intensity"], name="train/pixels", sample_size=0)
    monitor.graph(
        [{"name": "input", "type": "InputLayer", "output_shape": "(None, 2)", "params": 0, "trainable": 0},
         {"name": "dense", "type": "Dense", "output_shape": "(None, 3)", "params": 9, "trainable": 9}],
        [("input", "dense")],
    )  # fmt: skip
    viewer = viewers(server.url + "/?run=panels")
    viewer.wait_column_length("scalars:panels:loss", "step", 1)
    assert viewer.column("weights-current", "top") is None  # only the open tab is in the page
    flat = [0.018, 0.0185, 0.019]  # a learning rate's ticks: Bokeh's own labels read "1.80e-2"
    assert [label.strip() for label in viewer.wait(TICK_LABELS_JS, ["chart:loss", "left", flat])] == [
        "0.0180", "0.0185", "0.0190",
    ]  # fmt: skip
    assert viewer.wait(TICK_LABELS_JS, ["chart:loss", "left", [1234.5]])[0].strip() == "1234.5"  # no step to go by
    inexact = [14.1, 14.2, 14.3]  # 14.2 - 14.1 is 0.0999…: not "14.10"
    assert [label.strip() for label in viewer.wait(TICK_LABELS_JS, ["chart:loss", "left", inexact])] == [
        "14.1", "14.2", "14.3",
    ]  # fmt: skip

    viewer.show("Weights")
    assert viewer.column("scalars:panels:loss", "step") is None
    assert viewer.wait_column_length("weights-current", "top", 4) == [1.0, 2.0, 3.0, 4.0]
    tiny = [-5e-4, 0, 5e-4]  # a small layer's weights: Bokeh's own labels read "-5.000e-4", "0.000e+0"
    assert viewer.wait(TICK_LABELS_JS, ["weights-current-figure", "below", tiny]) == ["-5e-4", "0", "5e-4"]
    big = [100_000, 125_000, 150_000]
    assert viewer.wait(TICK_LABELS_JS, ["weights-current-figure", "below", big]) == ["1.00e5", "1.25e5", "1.50e5"]
    monitor.histogram("dense/kernel", (np.linspace(-1, 1, 5), np.array([4.0, 3.0, 2.0, 1.0])), step=1)
    viewer.wait("() => __find('weights-current').data.top[0] === 4")
    assert viewer.wait_column_length("weights-bands", "step", 2) == [0.0, 1.0]
    assert viewer.column("weights-bands", "p50") == pytest.approx(
        [1 / 3, -1 / 3]
    )  # median of counts 1,2,3,4 on [-1, 1]
    monitor.log({"norm/dense/kernel": 2.0, "update_ratio/dense/kernel": 0.01}, step=1)
    assert viewer.wait_column_length("weights-norm", "value", 2) == [2.5, 2.0]
    assert viewer.wait_column_length("weights-ratio", "step", 1) == [1.0]
    assert viewer.column("weights-ratio", "value") == [0.01]

    viewer.show("Predictions")
    assert viewer.column("weights-current", "top") is None
    assert viewer.wait_column_length("predictions-classes", "cls", 3) == ["cat", "dog", "eel"]
    assert viewer.column("predictions-classes", "mean_prob") == pytest.approx(outputs.mean(axis=0).tolist())
    assert viewer.column("predictions-classes", "true_freq") == pytest.approx([0.25, 0.5, 0.25])
    widths = viewer.wait(STRIP_WIDTHS_JS, "predictions-strip")  # the slider's column took 50% more than its share
    assert max(widths) - min(widths) <= 2, widths
    viewer.wait("() => __find('predictions-no-embedding').visible")  # sent without one: says how to send it
    assert viewer.column("predictions-confusion", "count") == [1, 0, 0, 1, 1, 0, 0, 0, 1]
    assert viewer.column("predictions-confusion", "label") == ["1", "", "", "1", "1", "", "", "", "1"]  # on the cells
    monitor.predictions("validation", y_true, np.eye(3)[y_true] * 0.9 + 0.1 / 3, step=1, classes=["cat", "dog", "eel"])
    viewer.wait("() => __find('predictions-confusion').data.count[3] === 0")
    assert viewer.column("predictions-confusion", "label") == ["1", "", "", "", "2", "", "", "", "1"]  # patched too
    # what arrives for a closed tab is there when it opens again
    monitor.histogram("dense/kernel", (np.linspace(-1, 1, 5), np.array([0.0, 5.0, 5.0, 0.0])), step=2)
    monitor.log({"loss": 0.5}, step=2)
    viewer.show("Training")
    viewer.wait_column_length("scalars:panels:loss", "step", 2)
    viewer.show("Weights")
    assert viewer.column("weights-current", "top") == [0.0, 5.0, 5.0, 0.0]
    assert viewer.column("weights-bands", "step") == [0.0, 1.0, 2.0]

    viewer.show("Data")
    assert viewer.wait_column_length("data-labels", "label", 3) == ["a", "b", "c"]
    assert sum(viewer.column("data-labels", "count") or []) == 200
    assert viewer.wait_column_length("data-scatter", "x", 1)
    # the labelled summary is shown first; the pixel summary is one pick away
    assert viewer.page.evaluate("() => __find('data-summary-select').options") == ["train", "train/pixels"]
    viewer.page.evaluate("() => { __find('data-summary-select').value = 'train/pixels' }")
    viewer.wait("() => __find('data-feature-select').value === 'intensity'")
    assert sum(viewer.column("data-feature", "top") or []) == 50
    viewer.wait("() => __find('data-no-labels').visible")  # no labels: a note, not two empty frames
    viewer.wait("() => __find('data-no-sample').visible")  # no sample: a note, not the last summary's points
    assert viewer.column("data-scatter", "x") == []
    viewer.page.evaluate("() => { __find('data-summary-select').value = 'train' }")
    viewer.wait("() => !__find('data-no-labels').visible && !__find('data-no-sample').visible")
    assert sorted(viewer.column("data-scatter", "x") or []) == pytest.approx(sorted(features[:, 0]))  # all 200 rows
    viewer.show("Model")
    assert viewer.wait_column_length("model-nodes", "name", 2) == ["input", "dense"]
    assert viewer.column("model-nodes", "y") == [0.0, -1.0]
    assert viewer.column("model-nodes", "detail") == ["(None, 2) · 0 params", "(None, 3) · 9 params"]
    drawn = """() => [...Bokeh.documents[0].all_models].filter((m) => m.data_source?.name === 'model-nodes')
      .map((r) => r.glyph.text?.field).filter(Boolean)"""
    assert viewer.page.evaluate(drawn) == ["name", "type", "detail"]  # all four on the boxes, not only on hover
    viewer.wait_text("model-total", "9</b> parameters")


VIEW_HEIGHT_JS = """(name) => {
  const seen = new Set();
  const walk = (view) => {
    if (!view || seen.has(view)) return null;
    seen.add(view);
    if (view.model && view.model.name === name) return view;
    for (const child of view.child_views ?? []) { const found = walk(child); if (found) return found; }
    return null;
  };
  for (const root of Object.values(Bokeh.index)) {
    const view = walk(root);
    if (view) return view.el.getBoundingClientRect().height;
  }
  return null;
}"""


def test_every_tab_is_drawn_when_opened(
    server: ServerThread, viewers: Callable[..., Viewer], monitors: Callable[..., Monitor]
) -> None:
    monitor = monitors("drawn")
    monitor.log({"loss": 1.0}, step=0)
    monitor.histogram("dense/kernel", (np.linspace(-1, 1, 5), np.array([1.0, 2.0, 3.0, 4.0])), step=0)
    viewer = viewers(server.url + "/?run=drawn&tab=weights")  # ?tab= opens a tab other than the first
    assert viewer.wait_column_length("weights-current", "top", 4) == [1.0, 2.0, 3.0, 4.0]
    assert viewer.column("scalars:drawn:loss", "step") is None
    for title, layout in (("Model", "model"), ("Runs", "runs"), ("Training", "curves"), ("Weights", "weights")):
        viewer.page.get_by_text(title, exact=True).first.click()
        viewer.wait(f"(name) => ({VIEW_HEIGHT_JS})(name) > 50", layout)
    assert viewer.column("weights-current", "top") == [1.0, 2.0, 3.0, 4.0]
