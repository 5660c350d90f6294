"""Assembles one labscreen process: ingest, REST API and dashboard on one IOLoop.

``LabscreenServer`` binds the socket, starts the store's writer, mounts the
Bokeh dashboard at ``/`` with ``BokehTornado`` and passes the ingest and API
handlers as its ``extra_patterns``, so producers and browsers share one port.
"""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bokeh.application import Application
from bokeh.protocol import Protocol
from bokeh.resources import Resources
from bokeh.server.connection import ServerConnection
from bokeh.server.contexts import ApplicationContext
from bokeh.server.server import BaseServer
from bokeh.server.session import ServerSession
from bokeh.server.tornado import BokehTornado
from bokeh.server.util import bind_sockets, create_hosts_allowlist
from bokeh.server.views.ws import WSHandler
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from monitor.api import ApiContext, api_routes
from monitor.auth import TOKEN_SETTING, ViewerAuth, derived_secret
from monitor.config import ServerConfig
from monitor.dashboard.app import make_dashboard
from monitor.dashboard.context import DashboardContext
from monitor.http_ingest import HttpIngest, JsonIngestHandler, RemoteMonitorHandler
from monitor.hub import Hub
from monitor.ingest import IngestService, IngestSocket
from monitor.metrics import Metrics
from monitor.store import SQLiteStore
from monitor.store.base import RunStore
from monitor.wire import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

SESSION_CHECK_MS = 2_000
SESSION_LIFETIME_MS = 5_000
"""A closed tab's Document is freed within about 7 s (Bokeh's defaults: 17 s + 15 s)."""

WEBSOCKET_MAX_MESSAGE_BYTES = 2 * MAX_MESSAGE_BYTES
"""Tornado's own cap. Messages between MAX_MESSAGE_BYTES and this close with
4009 and a log line; beyond it Tornado closes with 1009 before we see them."""


class DashboardTornado(BokehTornado):
    """``BokehTornado`` for live pages: no MathJax bundle; connections without Nagle's algorithm, or let go if gone.

    Bokeh's server pages load every BokehJS bundle, since it cannot know
    which models a session will use. The dashboard draws no TeX (its text
    models set ``disable_math``), and the MathJax bundle is 1.8 MB of the
    3.9 MB a new page had to fetch and compile before drawing anything.

    Bokeh writes each PATCH-DOC as several websocket frames (header,
    metadata, content, buffers). With Nagle's algorithm on, a frame written
    while an earlier one is still unacknowledged waits for the browser's
    delayed ACK (up to 40 ms on Linux) or for the page's next message to carry
    it. Tornado turns Nagle's algorithm back on when an HTTP exchange ends,
    the websocket handshake included, and Bokeh's ``WSHandler`` leaves it on,
    so it is turned off for each dashboard connection as Bokeh registers it
    (``new_connection``). At 1,000 points/s this was about 15 ms of a point's
    median way into the page. Ingest sockets turn it off themselves.
    """

    def new_connection(
        self, protocol: Protocol, socket: WSHandler, application_context: ApplicationContext, session: ServerSession
    ) -> ServerConnection:
        """Register a page's connection (Nagle's algorithm off); one that closed meanwhile is let go at once.

        Bokeh opens a connection after creating its session, which takes as
        long as building the document. A page closed or reloaded meanwhile has
        had its close handled already, with no connection to let go: Bokeh
        would keep this one, and the session it holds, for good.
        """
        connection = super().new_connection(protocol, socket, application_context, session)
        if socket.ws_connection is None:  # as WSHandler.on_close would have
            session.notify_connection_lost()
            self.client_lost(connection)
        else:
            socket.set_nodelay(True)
        return connection

    def resources(self, absolute_url: str | bool | None = None) -> Resources:
        resources = super().resources(absolute_url)
        return resources.clone(components=[c for c in resources.components if c != "bokeh-mathjax"])


class LabscreenServer:
    """One labscreen server process.

    Invariants: ``start`` and ``stop`` run on the thread of the IOLoop that
    serves; the store's writer is the only thread that writes to disk.
    """

    def __init__(self, config: ServerConfig, store: RunStore | None = None) -> None:
        self.config = config
        self.store: RunStore = store if store is not None else SQLiteStore(config.store, stale_after=config.stale_after)
        self.hub = Hub()
        self.metrics = Metrics()
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="labscreen-read")
        self.port = 0
        self._bokeh: BaseServer | None = None
        self._service: IngestService | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        host = "127.0.0.1" if self.config.host in ("", "0.0.0.0") else self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind, start the store's writer and begin serving on the current IOLoop.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = IOLoop.current()
        sockets, self.port = bind_sockets(self.config.host, self.config.port)
        service = IngestService(self.config, self.store, self.hub, self.metrics, loop)
        self._service = service
        self.store.start(service.on_commit)
        app = self._tornado_app(service)
        http = HTTPServer(app, max_body_size=WEBSOCKET_MAX_MESSAGE_BYTES)
        http.add_sockets(sockets)
        self._bokeh = BaseServer(loop, app, http)
        self._bokeh.start()
        self._register_gauges(service)
        log.info("labscreen serving on %s (store: %s)", self.url, self.config.store)

    def _tornado_app(self, service: IngestService) -> DashboardTornado:
        api = ApiContext(self.store, self.executor, self.metrics, self.config.view_token)
        http_ingest = HttpIngest(service)
        routes: list[Any] = [
            (r"/ws/ingest", IngestSocket, {"service": service}),
            (r"/api/ingest", JsonIngestHandler, {"ingest": http_ingest}),
            (r"/publish/epoch/end/?", RemoteMonitorHandler, {"ingest": http_ingest}),
            *api_routes(api),
        ]
        return DashboardTornado(
            self._applications(),
            extra_patterns=routes,
            extra_websocket_origins=self._origins(),
            websocket_max_message_size_bytes=WEBSOCKET_MAX_MESSAGE_BYTES,
            use_index=False,
            redirect_root=False,
            check_unused_sessions_milliseconds=SESSION_CHECK_MS,
            unused_session_lifetime_milliseconds=SESSION_LIFETIME_MS,
            **self._auth_settings(),
        )

    def _auth_settings(self) -> dict[str, Any]:
        token = self.config.view_token
        if token is None:
            return {}
        return {
            "auth_provider": ViewerAuth(token),
            "secret_key": derived_secret(token, "sessions"),
            "sign_sessions": True,
            "cookie_secret": derived_secret(token, "cookies"),
            TOKEN_SETTING: token,
            "labscreen_metrics": self.metrics,
        }

    def _applications(self) -> dict[str, Application]:
        context = DashboardContext(
            hub=self.hub,
            store=self.store,
            executor=self.executor,
            stale_after=self.config.stale_after,
            kiosk=self.config.kiosk,
            metrics=self.metrics,
            max_viewers=self.config.max_viewers,
            max_backlog_bytes=self.config.max_viewer_backlog_bytes,
            stall_seconds=self.config.viewer_stall_seconds,
        )
        return {"/": make_dashboard(context)}

    def _origins(self) -> list[str]:
        if self.config.allow_origin:
            return create_hosts_allowlist(list(self.config.allow_origin), self.port)
        hosts = {"localhost", "127.0.0.1", self.config.host}
        if self.config.host in ("", "0.0.0.0", "::"):
            hosts.add(socket.gethostname())
        return [f"{h}:{self.port}" for h in sorted(hosts) if h]

    def _register_gauges(self, service: IngestService) -> None:
        m = self.metrics
        m.gauge(
            "labscreen_producers_connected", "Open producer websocket connections.", lambda: len(service.connections)
        )
        m.gauge(
            "labscreen_store_queue_depth",
            "Frames waiting for the store's writer.",
            lambda: self.store.health().queue_depth,
        )
        m.gauge(
            "labscreen_store_healthy", "1 when the store is committing writes.", lambda: float(self.store.health().ok)
        )
        m.gauge("labscreen_hub_subscribers", "Live dashboard subscriptions.", lambda: self.hub.subscriber_count)
        m.gauge(
            "labscreen_dashboard_sessions", "Dashboard sessions (Documents) held.", lambda: self.dashboard_documents
        )

    @property
    def viewer_sessions(self) -> int:
        """Open dashboard websocket connections."""
        return len(self._viewer_connections())

    @property
    def dashboard_documents(self) -> int:
        """Bokeh sessions (each with its Document) the dashboard holds, connected or not."""
        return len(self._bokeh.get_sessions("/")) if self._bokeh is not None else 0

    def _viewer_connections(self) -> list[Any]:
        # BokehTornado keeps its connections in a private set; reading it is the only way to close
        # them on stop (Bokeh's own stop() leaves them open, see the TODO in bokeh/server/tornado.py).
        app = self._bokeh._tornado if self._bokeh is not None else None
        return list(getattr(app, "_clients", ()))

    async def stop(self) -> None:
        """Stop serving, close producer and viewer connections, flush and close the store."""
        if self._bokeh is not None:
            viewers = self._viewer_connections()
            http = self._bokeh._http
            self._bokeh.stop()
            for connection in viewers:
                connection._socket.close(1001, "server shutting down")
            await http.close_all_connections()
            self._bokeh = None
        if self._service is not None:
            for producer in list(self._service.connections):
                if isinstance(producer, IngestSocket):
                    producer.close(1001, "server shutting down")
        await IOLoop.current().run_in_executor(None, self.store.close)
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("labscreen server on port %d stopped", self.port)
