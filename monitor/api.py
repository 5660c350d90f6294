"""REST API: runs, series, histograms, predictions, graph, data, events, health, metrics.

Every read runs in the executor, never on the event loop. Unknown runs or
series answer 404 with a JSON body naming them; bad query values answer 400.
Tabular endpoints also answer ``?format=csv``. The HTTP contract is written
out in ``docs/api.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from monitor import export
from monitor.auth import viewer_authorized
from monitor.metrics import Metrics
from monitor.store.base import NotFoundError, RunStore

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_QUERY_POINTS = 1_000_000


class ApiContext:
    """What every API handler needs."""

    def __init__(self, store: RunStore, executor: Executor, metrics: Metrics, view_token: str | None = None) -> None:
        self.store = store
        self.executor = executor
        self.metrics = metrics
        self.view_token = view_token


class ApiHandler(RequestHandler):
    """Base: JSON errors, executor reads, bounded integer query arguments."""

    open_to_all = False
    """Whether the endpoint answers without the view token (only ``/healthz``)."""

    def initialize(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def prepare(self) -> None:
        if not self.open_to_all and not viewer_authorized(self, self.ctx.view_token):
            self.ctx.metrics.errors["viewer_unauthorized"] += 1
            raise HTTPError(401, reason="Unauthorized", log_message="this server needs its view token: "
                            "'Authorization: Bearer <token>', ?token=, or sign in at /login")  # fmt: skip

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store read off the loop; ``NotFoundError`` becomes 404."""
        try:
            return await IOLoop.current().run_in_executor(self.ctx.executor, fn, *args)
        except NotFoundError as exc:
            raise HTTPError(404, reason="Not Found", log_message=str(exc)) from exc

    def int_arg(self, name: str, default: int | None, low: int = 0, high: int = 2**62) -> int | None:
        """An optional integer query argument within [low, high]; 400 otherwise."""
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise HTTPError(400, reason="Bad Request", log_message=f"?{name}= must be an integer in [{low}, {high}]")
        return value

    def wants_csv(self) -> bool:
        """Whether ``?format=csv`` was asked for (400 for an unknown format)."""
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise HTTPError(400, reason="Bad Request", log_message=f"?format= must be json or csv, got {fmt[:40]!r}")
        return fmt == "csv"

    def send_json(self, document: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(document, allow_nan=False))

    def send_csv(self, text: str) -> None:
        self.set_header("Content-Type", "text/csv; charset=UTF-8")
        self.finish(text)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, HTTPError) and exc.log_message else self._reason
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": message, "status": status_code}))


class RunsHandler(ApiHandler):
    """``GET /api/runs``: every run, newest first."""

    async def get(self) -> None:
        runs = await self.read(self.ctx.store.list_runs)
        if self.wants_csv():
            self.send_csv(export.runs_csv(runs))
        else:
            self.send_json({"runs": [export.run_dict(r) for r in runs]})


class RunHandler(ApiHandler):
    """``GET /api/runs/{id}``."""

    async def get(self, run: str) -> None:
        self.send_json(export.run_dict(await self.read(self.ctx.store.get_run, run)))


class ScalarNamesHandler(ApiHandler):
    """``GET /api/runs/{id}/scalars``: the run's series names."""

    async def get(self, run: str) -> None:
        self.send_json({"run": run, "names": await self.read(self.ctx.store.scalar_names, run)})


class ScalarSeriesHandler(ApiHandler):
    """``GET /api/runs/{id}/scalars/{name}?start=&end=&max_points=&format=``."""

    async def get(self, run: str, name: str) -> None:
        start, end = self.int_arg("start", None, -(2**62)), self.int_arg("end", None, -(2**62))
        max_points = self.int_arg("max_points", None, 2, MAX_QUERY_POINTS)
        csv = self.wants_csv()
        series = await self.read(self.ctx.store.scalars, run, name, start, end, max_points)
        if csv:
            self.send_csv(export.to_csv(("name", "step", "wall", "value"), export.series_rows(series)))
        else:
            self.send_json(export.series_dict(series))


class HistogramNamesHandler(ApiHandler):
    """``GET /api/runs/{id}/histograms``: the run's histogram names."""

    async def get(self, run: str) -> None:
        self.send_json({"run": run, "names": await self.read(self.ctx.store.histogram_names, run)})


class HistogramsHandler(ApiHandler):
    """``GET /api/runs/{id}/histograms/{name}?start=&end=&limit=``."""

    async def get(self, run: str, name: str) -> None:
        start, end = self.int_arg("start", None, -(2**62)), self.int_arg("end", None, -(2**62))
        limit = self.int_arg("limit", 100, 1, 100_000)
        records = await self.read(self.ctx.store.histograms, run, name, start, end, limit)
        self.send_json({"run": run, "name": name, "histograms": [export.histogram_dict(h) for h in records]})


class PredictionsHandler(ApiHandler):
    """``GET /api/runs/{id}/predictions?name=&limit=``: the latest predictions."""

    async def get(self, run: str) -> None:
        name = self.get_query_argument("name", None)
        limit = self.int_arg("limit", 1, 1, 1000)
        records = await self.read(self.ctx.store.predictions, run, name, limit)
        self.send_json({"run": run, "predictions": [export.predictions_dict(p) for p in records]})


class GraphHandler(ApiHandler):
    """``GET /api/runs/{id}/graph``: 404 when the run sent none."""

    async def get(self, run: str) -> None:
        graph = await self.read(self.ctx.store.graph, run)
        if graph is None:
            raise HTTPError(404, reason="Not Found", log_message=f"No graph for run {run!r}")
        self.send_json({"run": run, **export.graph_dict(graph)})


class DataHandler(ApiHandler):
    """``GET /api/runs/{id}/data``: the latest data summary per name."""

    async def get(self, run: str) -> None:
        records = await self.read(self.ctx.store.data_summaries, run)
        self.send_json({"run": run, "data": [export.data_dict(d) for d in records]})


class EventsHandler(ApiHandler):
    """``GET /api/runs/{id}/events?limit=&format=``: newest first."""

    async def get(self, run: str) -> None:
        limit = self.int_arg("limit", 100, 1, 100_000)
        csv = self.wants_csv()
        events = await self.read(self.ctx.store.events, run, limit)
        if csv:
            rows = ((e.step, e.wall, e.level, e.text) for e in events)
            self.send_csv(export.to_csv(("step", "wall", "level", "text"), rows))
        else:
            self.send_json({"run": run, "events": [export.event_dict(e) for e in events]})


class HealthHandler(ApiHandler):
    """``GET /healthz``: 200 when the store is writing, 503 when it is failing."""

    open_to_all = True

    def get(self) -> None:
        health = self.ctx.store.health()
        self.set_status(200 if health.ok else 503)
        self.send_json(
            {
                "status": "ok" if health.ok else "degraded",
                "store": {"ok": health.ok, "queue_depth": health.queue_depth, "error": health.error},
            }
        )


class MetricsHandler(ApiHandler):
    """``GET /metrics``: Prometheus text format."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.ctx.metrics.render())


def api_routes(ctx: ApiContext) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """URL patterns of the REST API, health and metrics."""
    run = r"/api/runs/([A-Za-z0-9][A-Za-z0-9._-]{0,199})"
    handlers: list[tuple[str, type[RequestHandler]]] = [
        (r"/api/runs", RunsHandler),
        (run, RunHandler),
        (run + r"/scalars", ScalarNamesHandler),
        (run + r"/scalars/(.+)", ScalarSeriesHandler),
        (run + r"/histograms", HistogramNamesHandler),
        (run + r"/histograms/(.+)", HistogramsHandler),
        (run + r"/predictions", PredictionsHandler),
        (run + r"/graph", GraphHandler),
        (run + r"/data", DataHandler),
        (run + r"/events", EventsHandler),
        (r"/healthz", HealthHandler),
        (r"/metrics", MetricsHandler),
    ]
    return [(pattern, handler, {"ctx": ctx}) for pattern, handler in handlers]
