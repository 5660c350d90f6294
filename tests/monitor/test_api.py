"""Integration tests of HTTP ingest and the REST API against a real server on port 0."""

from __future__ import annotations

import json
import urllib.parse

import numpy as np
import pytest

from monitor.wire import Scalars
from tests.monitor.harness import Harness


async def post(harness: Harness, path: str, body: object, **headers: str) -> tuple[int, dict[str, object]]:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    response = await harness.fetch(path, method="POST", body=data, headers=headers or None)
    return response.code, json.loads(response.body)


async def test_curl_style_json_scalars(harness: Harness) -> None:
    code, reply = await post(
        harness, "/api/ingest", {"run": "curl-run", "step": 3, "metrics": {"loss": 0.5, "acc": 0.9}}
    )
    assert code == 200 and reply == {"run": "curl-run", "accepted": 2, "durable": True}
    code, reply = await post(
        harness,
        "/api/ingest",
        {"run": "curl-run", "points": [{"step": 4, "metrics": {"loss": 0.4}}, {"step": 5, "metrics": {"loss": "NaN"}}]},
    )
    assert code == 200 and reply["accepted"] == 2
    await harness.flush()
    body = json.loads((await harness.fetch("/api/runs/curl-run/scalars/loss")).body)
    assert body["steps"] == [3, 4, 5] and body["values"] == [0.5, 0.4, "NaN"]


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ("{not json", "bad_frame", "not JSON"),
        ([1, 2], "bad_frame", "JSON object"),
        ({"metrics": {"a": 1}}, "missing_field", "'run'"),
        ({"run": "../etc", "metrics": {"a": 1}}, "bad_field", "run id"),
        ({"run": "r", "metrics": {"a": "high"}}, "bad_field", "'a'"),
        ({"run": "r", "metrics": {}}, "bad_field", "non-empty"),
        ({"run": "r", "step": -1, "metrics": {"a": 1}}, "bad_field", "step"),
        ({"run": "r", "points": "many"}, "bad_field", "'points'"),
    ],
)
async def test_bad_http_ingest(harness: Harness, body: object, code: str, needle: str) -> None:
    status, reply = await post(harness, "/api/ingest", body)
    assert status == 400 and reply["code"] == code and needle in str(reply["error"])


@pytest.mark.parametrize("harness", [{"token": "tok"}], indirect=True)
async def test_http_ingest_needs_the_token(harness: Harness) -> None:
    status, reply = await post(harness, "/api/ingest", {"run": "r", "metrics": {"a": 1}})
    assert status == 401 and reply["code"] == "unauthorized"
    status, _ = await post(harness, "/api/ingest", {"run": "r", "metrics": {"a": 1}}, Authorization="Bearer tok")
    assert status == 200


async def test_remote_monitor_form_and_json_bodies(harness: Harness) -> None:
    form = urllib.parse.urlencode({"data": json.dumps({"epoch": 0, "loss": 1.5, "val_loss": 1.7})})
    response = await harness.fetch("/publish/epoch/end/?run=rm", method="POST", body=form)
    assert response.code == 200
    response = await harness.fetch(
        "/publish/epoch/end/",
        method="POST",
        body=json.dumps({"epoch": 1, "loss": 1.2}),
        headers={"Content-Type": "application/json", "X-Labscreen-Run": "rm"},
    )
    assert response.code == 200
    await harness.flush()
    body = json.loads((await harness.fetch("/api/runs/rm/scalars/epoch/loss")).body)
    assert body["steps"] == [0, 1] and body["values"] == [1.5, 1.2]


async def seed(harness: Harness, run: str = "api-run", n: int = 5000) -> None:
    client = await harness.connect()
    await client.hello(run)
    steps = np.arange(n, dtype=np.int64)
    await client.send(Scalars(run, 1, ("loss",), steps, np.zeros(n), np.zeros(n, np.int32), np.cos(steps / 100.0)))
    await client.until_ack(run, 1)


async def test_series_range_decimation_and_csv(harness: Harness) -> None:
    await seed(harness)
    body = json.loads((await harness.fetch("/api/runs/api-run/scalars/loss?start=100&end=199")).body)
    assert body["steps"] == list(range(100, 200))
    body = json.loads((await harness.fetch("/api/runs/api-run/scalars/loss?max_points=200")).body)
    assert 2 <= len(body["steps"]) <= 200 and body["steps"][0] == 0 and body["steps"][-1] == 4999
    text = (await harness.fetch("/api/runs/api-run/scalars/loss?format=csv&end=2")).body.decode()
    assert text.splitlines()[0] == "name,step,wall,value" and len(text.splitlines()) == 4
    names = json.loads((await harness.fetch("/api/runs/api-run/scalars")).body)
    assert names["names"] == ["loss"]
    runs_csv = (await harness.fetch("/api/runs?format=csv")).body.decode()
    assert runs_csv.startswith("id,name,project,status") and "api-run" in runs_csv


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/api/runs/ghost", 404, "ghost"),
        ("/api/runs/ghost/scalars/loss", 404, "ghost"),
        ("/api/runs/api-run/scalars/nothing", 404, "nothing"),
        ("/api/runs/api-run/scalars/loss?max_points=abc", 400, "max_points"),
        ("/api/runs/api-run/scalars/loss?max_points=99999999999", 400, "max_points"),
        ("/api/runs/api-run/scalars/loss?format=xml", 400, "format"),
        ("/api/runs/api-run/graph", 404, "graph"),
    ],
)
async def test_rest_errors_are_json_and_name_the_thing(harness: Harness, path: str, status: int, needle: str) -> None:
    await seed(harness, n=10)
    response = await harness.fetch(path)
    assert response.code == status
    assert needle in json.loads(response.body)["error"]


async def test_healthz_and_metrics(harness: Harness) -> None:
    await seed(harness, n=10)
    health = await harness.fetch("/healthz")
    assert health.code == 200 and json.loads(health.body)["status"] == "ok"
    text = (await harness.fetch("/metrics")).body.decode()
    assert 'labscreen_frames_received_total{kind="scalars"} 1' in text
    assert "labscreen_points_stored_total 10" in text
    assert "labscreen_producers_connected 1" in text
    assert "# TYPE labscreen_store_queue_depth gauge" in text
