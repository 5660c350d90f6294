"""The live dashboard: a Bokeh app served from the ingest server's event loop."""

from __future__ import annotations

from monitor.dashboard.app import make_dashboard
from monitor.dashboard.context import DashboardContext

__all__ = ["DashboardContext", "make_dashboard"]
