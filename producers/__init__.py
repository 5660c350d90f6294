"""The training side of labscreen: ``Monitor`` streams a run to the server."""

from __future__ import annotations

from producers.client import Monitor
from producers.spool import DeliveryReport

__all__ = ["DeliveryReport", "Monitor"]
