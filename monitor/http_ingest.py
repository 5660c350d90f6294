"""HTTP ingest of JSON scalars, for ``curl`` and Keras's ``RemoteMonitor``.

``POST /api/ingest`` takes ``{"run", "step", "metrics": {name: value}}`` or
``{"run", "points": [{"step", "metrics", "wall"?}, ...]}`` (optional
``name``/``project``). ``POST /publish/epoch/end/`` takes exactly what
``keras.callbacks.RemoteMonitor`` sends (form field ``data`` holding JSON, or
a JSON body with ``send_as_json=True``) and records the epoch logs as
``epoch/<key>`` scalars at step = epoch. Both go through the same
``IngestService`` as the websocket, as a server-side stream named ``http``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from typing import Any

import numpy as np
from tornado.web import RequestHandler

from monitor.ingest import IngestService, token_matches
from monitor.store.base import StoreUnavailable
from monitor.wire import RUN_ID_PATTERN, Hello, ProtocolError, Scalars

log = logging.getLogger(__name__)

HTTP_STREAM = "http"
MAX_HTTP_POINTS = 100_000
COMMIT_WAIT = 10.0
"""Seconds an HTTP publisher waits for its points to be committed before a 202."""
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class HttpIngest:
    """Turns JSON points into ``Scalars`` frames on the ``http`` stream of each run."""

    def __init__(self, service: IngestService) -> None:
        self.service = service
        self._next_seq: dict[str, int] = {}
        self._next_step: dict[str, int] = {}
        self._acks = _HttpAcks()

    async def publish(
        self, run: str, points: list[tuple[int | None, float, dict[str, float]]], meta: dict[str, str]
    ) -> tuple[int, bool]:
        """Store points for ``run`` and wait (bounded) until they are durable.

        Returns:
            How many scalar values were accepted, and whether the store
            committed them within ``COMMIT_WAIT`` seconds.

        Raises:
            ProtocolError: a bad run id or name, or too many points.
            StoreUnavailable: the store is refusing writes.
        """
        if not RUN_ID_PATTERN.match(run):
            raise ProtocolError("bad_field", f"run id {run!r:.80} must be 1-200 of [A-Za-z0-9._-]")
        if run not in self._next_seq:
            hello = Hello(run=run, stream=HTTP_STREAM, name=meta.get("name", run), project=meta.get("project", ""),
                          framework=meta.get("framework", "http"))  # fmt: skip
            self._next_seq[run] = self.service.open(hello, self._acks).last_seq + 1
        frame = self._frame(run, points)
        durable = self._acks.expect(run, frame.seq)
        self.service.accept(HTTP_STREAM, frame)
        self._next_seq[run] += 1
        self.service.metrics.http_requests += 1
        try:
            await asyncio.wait_for(asyncio.shield(durable), COMMIT_WAIT)
        except asyncio.TimeoutError:
            return len(frame.values), False
        return len(frame.values), True

    def _frame(self, run: str, points: list[tuple[int | None, float, dict[str, float]]]) -> Scalars:
        names: dict[str, int] = {}
        steps, wall, index, values = [], [], [], []
        for given, stamp, metrics in points:
            step = self._next_step.get(run, 0) if given is None else given
            self._next_step[run] = max(self._next_step.get(run, 0), step + 1)
            for name, value in metrics.items():
                steps.append(step)
                wall.append(stamp)
                index.append(names.setdefault(name, len(names)))
                values.append(value)
        return Scalars(
            run=run,
            seq=self._next_seq[run],
            names=tuple(names),
            steps=np.array(steps, dtype=np.int64),
            wall=np.array(wall, dtype=np.float64),
            index=np.array(index, dtype=np.int32),
            values=np.array(values, dtype=np.float64),
        )


class _HttpAcks:
    """Futures resolved when the store commits an HTTP frame; the response waits on them."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    def expect(self, run: str, seq: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(run, []).append((seq, future))
        return future

    def send_ack(self, run: str, seq: int) -> None:
        pending = self._waiting.get(run, [])
        for waited, future in pending:
            if waited <= seq and not future.done():
                future.set_result(None)
        self._waiting[run] = [(s, f) for s, f in pending if not f.done()]


def parse_metrics(raw: Any, where: str) -> dict[str, float]:
    """Validate a ``{name: number}`` object; "NaN"/"Infinity"/"-Infinity" strings allowed.

    Raises:
        ProtocolError: naming the bad key or value.
    """
    if not isinstance(raw, dict) or not raw:
        raise ProtocolError("bad_field", f"{where} must be a non-empty object of name -> number")
    metrics: dict[str, float] = {}
    for name, given in raw.items():
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ProtocolError("bad_field", f"metric name {name!r:.80} in {where} must be 1-200 characters")
        value = _SPECIAL[given] if isinstance(given, str) and given in _SPECIAL else given
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ProtocolError("bad_field", f"metric {name!r} in {where} must be a number, got {value!r:.80}")
        metrics[name] = float(value)
    return metrics


def _step(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise ProtocolError("bad_field", f"{where}.step must be a non-negative integer, got {raw!r:.80}")
    return raw


class _JsonHandler(RequestHandler):
    def initialize(self, ingest: HttpIngest) -> None:
        self.ingest = ingest

    def prepare(self) -> None:
        service = self.ingest.service
        if not token_matches(service.config.token, self.request.headers.get("Authorization")):
            service.metrics.errors["unauthorized"] += 1
            self._fail(401, "unauthorized", "missing or wrong token: send 'Authorization: Bearer <token>'")

    def _fail(self, status: int, code: str, message: str) -> None:
        self.set_status(status)
        self.finish({"error": message, "code": code})

    async def _publish(
        self, run: str, points: list[tuple[int | None, float, dict[str, float]]], meta: dict[str, str]
    ) -> None:
        service = self.ingest.service
        try:
            accepted, durable = await self.ingest.publish(run, points, meta)
        except ProtocolError as exc:
            service.metrics.errors[exc.code] += 1
            self._fail(400, exc.code, exc.message)
        except StoreUnavailable as exc:
            service.metrics.errors["store_unavailable"] += 1
            self._fail(503, "store_unavailable", f"store is not accepting writes: {exc}")
        else:
            self.set_status(200 if durable else 202)
            self.finish({"run": run, "accepted": accepted, "durable": durable})

    def _json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError("bad_frame", f"body is not JSON: {exc}") from exc


class JsonIngestHandler(_JsonHandler):
    """``POST /api/ingest``: JSON scalars from anything that can speak HTTP."""

    async def post(self) -> None:
        try:
            body = self._json_body()
            if not isinstance(body, dict):
                raise ProtocolError("bad_frame", "body must be a JSON object with 'run' and 'metrics' or 'points'")
            run, points = body.get("run"), self._points(body)
            if not isinstance(run, str):
                raise ProtocolError("missing_field", f"'run' must be a string run id, got {run!r:.80}")
        except ProtocolError as exc:
            self.ingest.service.metrics.errors[exc.code] += 1
            self._fail(400, exc.code, exc.message)
            return
        meta = {k: body[k] for k in ("name", "project") if isinstance(body.get(k), str)}
        await self._publish(run, points, meta)

    def _points(self, body: dict[str, Any]) -> list[tuple[int | None, float, dict[str, float]]]:
        raw = body.get("points")
        if raw is None:
            return [
                (
                    _step(body.get("step"), "body"),
                    _wall(body.get("wall")),
                    parse_metrics(body.get("metrics"), "'metrics'"),
                )
            ]
        if not isinstance(raw, list) or not raw or len(raw) > MAX_HTTP_POINTS:
            raise ProtocolError("bad_field", f"'points' must be a list of 1..{MAX_HTTP_POINTS} objects")
        points = []
        for i, point in enumerate(raw):
            if not isinstance(point, dict):
                raise ProtocolError("bad_field", f"points[{i}] must be an object")
            where = f"points[{i}]"
            points.append(
                (_step(point.get("step"), where), _wall(point.get("wall")), parse_metrics(point.get("metrics"), where))
            )
        return points


def _wall(raw: Any) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    return time.time()


class RemoteMonitorHandler(_JsonHandler):
    """``POST /publish/epoch/end/``: what ``keras.callbacks.RemoteMonitor`` sends, unchanged.

    The run is named by ``?run=`` in the path, an ``X-Labscreen-Run`` header,
    or else ``keras-remote-monitor``.
    """

    async def post(self) -> None:
        try:
            logs = self._logs()
            epoch = logs.pop("epoch", None)
            step = _step(epoch, "epoch")
            metrics = parse_metrics({f"epoch/{k}": v for k, v in logs.items()}, "epoch logs")
        except ProtocolError as exc:
            self.ingest.service.metrics.errors[exc.code] += 1
            self._fail(400, exc.code, exc.message)
            return
        await self._publish(self._run(), [(step, time.time(), metrics)], {"framework": "keras RemoteMonitor"})

    def _logs(self) -> dict[str, Any]:
        field = self.get_body_argument("data", default=None)
        try:
            logs = json.loads(field) if field is not None else self._json_body()
        except ValueError as exc:
            raise ProtocolError("bad_frame", f"form field 'data' is not JSON: {exc}") from exc
        if not isinstance(logs, dict):
            raise ProtocolError("bad_frame", "expected the epoch logs as a JSON object")
        return logs

    def _run(self) -> str:
        raw = (
            self.get_query_argument("run", None)
            or self.request.headers.get("X-Labscreen-Run")
            or "keras-remote-monitor"
        )
        return re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:200].lstrip("-._") or "keras-remote-monitor"
