"""What the dashboard needs from the server that hosts it.

The server assembly builds one ``DashboardContext`` and hands it to
``make_dashboard``; every session of the app shares it.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from monitor.dashboard.backlog import DEFAULT_MAX_BYTES, DEFAULT_STALL_SECONDS
from monitor.hub import Hub
from monitor.metrics import Metrics
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
        metrics: The server's counters; refused (``viewer_limit``) and
            dropped (``viewer_too_slow``) viewers count in its ``errors``.
        max_viewers: Most dashboard sessions open at a time; more get a
            page saying the limit is reached.
        max_backlog_bytes: Most bytes a viewer's connection may leave unread
            in the server before its updates are held.
        stall_seconds: A viewer whose connection stays behind (not reading,
            or over ``max_backlog_bytes``) this long is dropped and reloads.
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
    metrics: Metrics | None = None
    max_viewers: int = 64
    max_backlog_bytes: int = DEFAULT_MAX_BYTES
    stall_seconds: float = DEFAULT_STALL_SECONDS
