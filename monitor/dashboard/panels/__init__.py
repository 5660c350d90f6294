"""The dashboard's panels, one module each; every panel is a ``Panel``."""

from __future__ import annotations

from monitor.dashboard.panels.base import Panel

__all__ = ["Panel"]
