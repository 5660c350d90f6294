"""The HTML page around the Bokeh document: page CSS, the reload watchdog, paint and leak fixes.

The watchdog (``static/watchdog.js``) listens for BokehJS's
``connection_lost`` document event, polls the server's health endpoint and
reloads the page when the server answers, so a lab screen recovers from a
server restart, or from being dropped as a too-slow viewer, on its own; on a
lab screen ``static/viewport.js`` tells the server whether the window is
portrait. The
page also declares an empty favicon so the browser makes no request that
could fail. ``static/paint_fix.js`` changes how BokehJS paints and lays out
a page that streams into many plots, and ``static/leak_fix.js`` makes BokehJS let go of
plots and models the page no longer shows (see each script's header), with
helpers from ``static/patching.js``; all three must run after BokehJS has
loaded and before the document is rendered: the template's postamble.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from jinja2 import Environment, Template

STALL_MS = 8000
"""The page reloads (once the server answers) when the heartbeat stops this long."""

_PAGE = """{% extends base %}
{% block preamble %}
<link rel="icon" href="data:,">
<style>{{ labscreen_css }}</style>
{% endblock %}
{% block postamble %}
<script>window.LABSCREEN = {{ labscreen_config }};</script>
<script>{{ labscreen_watchdog }}</script>
<script>{{ labscreen_viewport }}</script>
<script>{{ labscreen_patching }}</script>
<script>{{ labscreen_paint_fix }}</script>
<script>{{ labscreen_leak_fix }}</script>
<script>{{ labscreen_picker_fix }}</script>
{% endblock %}
"""


@cache
def static_js(name: str) -> str:
    """The source of ``static/<name>`` (a page script shipped with the package)."""
    return resources.files("monitor.dashboard").joinpath(f"static/{name}").read_text(encoding="utf-8")


@cache
def page_template() -> Template:
    """The Jinja template Bokeh renders the page with (extends Bokeh's own)."""
    return Environment(autoescape=False).from_string(_PAGE)


def page_variables(css: str, healthz_path: str, kiosk: bool, retry_ms: int | None = None) -> dict[str, str]:
    """Template variables for one session's page.

    ``retry_ms`` makes the page reload itself after that long (once the
    server answers) instead of watching the dashboard's heartbeat: for pages
    that are not the dashboard, such as the viewer-limit notice.
    """
    settings = {"healthz": healthz_path, "kiosk": kiosk, "stall_ms": STALL_MS, "retry_ms": retry_ms}
    config = json.dumps(settings).replace("</", "<\\/")
    return {
        "labscreen_css": css,
        "labscreen_config": config,
        "labscreen_watchdog": static_js("watchdog.js"),
        "labscreen_viewport": static_js("viewport.js"),
        "labscreen_patching": static_js("patching.js"),
        "labscreen_paint_fix": static_js("paint_fix.js"),
        "labscreen_leak_fix": static_js("leak_fix.js"),
        "labscreen_picker_fix": static_js("picker_fix.js"),
    }
