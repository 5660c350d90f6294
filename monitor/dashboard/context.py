"""What the dashboard needs from the server that hosts it.

The server assembly builds one ``DashboardContext`` and hands it to
``make_dashboard``; every session of the app shares it.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from monitor.hub import Hub
from monitor.store.base import RunStore


@dataclass(frozen=True)
class DashboardContext:
    """Shared, immutable wiring of the dashboard app.

    Attributes:
        hub: Live messages; sessions subscribe on the server's event loop.
        store: History; read only through ``executor``, never on the loop.
        executor: Runs blocking store reads.
        stale_after: Seconds without data after which a running run is stale.
        kiosk: Serve the lab-screen view by default (``/?kiosk=0`` opts out).
        healthz_path: URL path the page polls before reloading itself after
            losing its websocket.
        history_points: Points per scalar line loaded when a session opens.
        history_histograms: Histograms per tensor loaded when a session opens.
        directory_refresh: Seconds between re-reads of the run list from the store.
    """

    hub: Hub
    store: RunStore
    executor: Executor
    stale_after: float
    kiosk: bool = False
    healthz_path: str = "/healthz"
    history_points: int = 2000
    history_histograms: int = 100
    directory_refresh: float = 15.0
