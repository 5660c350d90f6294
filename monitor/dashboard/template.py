"""The HTML page around the Bokeh document: page CSS and the reload watchdog.

The watchdog (``static/watchdog.js``) listens for BokehJS's
``connection_lost`` document event, polls the server's health endpoint and
reloads the page when the server answers, so a lab screen recovers from a
server restart, or from being dropped as a too-slow viewer, on its own. The
page also declares an empty favicon so the browser makes no request that
could fail.
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
{% endblock %}
"""


@cache
def watchdog_js() -> str:
    """The watchdog script's source."""
    return resources.files("monitor.dashboard").joinpath("static/watchdog.js").read_text(encoding="utf-8")


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
    return {"labscreen_css": css, "labscreen_config": config, "labscreen_watchdog": watchdog_js()}
