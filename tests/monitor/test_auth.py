"""Viewer authentication against a real server: view token, signed cookie, login form, read-only."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.monitor.harness import Harness

VIEW = {"view_token": "look-only", "token": "write-only"}


@pytest.mark.parametrize("harness", [VIEW], indirect=True)
async def test_rest_needs_the_view_token(harness: Harness) -> None:
    refused = await harness.fetch("/api/runs")
    assert refused.code == 401 and "view token" in json.loads(refused.body)["error"]
    assert (await harness.fetch("/api/runs", headers={"Authorization": "Bearer write-only"})).code == 401
    assert (await harness.fetch("/api/runs", headers={"Authorization": "Bearer look-only"})).code == 200
    assert (await harness.fetch("/healthz")).code == 200
    assert (await harness.fetch("/metrics")).code == 401


@pytest.mark.parametrize("harness", [VIEW], indirect=True)
async def test_query_token_sets_a_signed_httponly_cookie_that_works_alone(harness: Harness) -> None:
    first = await harness.fetch("/api/runs?token=look-only")
    assert first.code == 200
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "look-only" not in cookie
    pair = cookie.split(";")[0]
    assert (await harness.fetch("/api/runs", headers={"Cookie": pair})).code == 200
    name, _, value = pair.partition("=")
    forged = f"{name}={value[:-4]}abcd"
    assert (await harness.fetch("/api/runs", headers={"Cookie": forged})).code == 401


@pytest.mark.parametrize("harness", [VIEW], indirect=True)
async def test_login_form(harness: Harness) -> None:
    page = await harness.fetch("/login")
    assert page.code == 200 and b"view token" in page.body
    wrong = await harness.fetch("/login", method="POST", body=urllib.parse.urlencode({"token": "nope"}))
    assert wrong.code == 401
    right = await harness.fetch(
        "/login?next=/api/runs",
        method="POST",
        body=urllib.parse.urlencode({"token": "look-only"}),
        follow_redirects=False,
    )
    assert right.code == 302 and right.headers["Location"] == "/api/runs"
    assert "labscreen_view=" in right.headers["Set-Cookie"]
    evil = await harness.fetch(
        "/login?next=//evil.example/",
        method="POST",
        body=urllib.parse.urlencode({"token": "look-only"}),
        follow_redirects=False,
    )
    assert evil.headers["Location"] == "/"
    text = (await harness.fetch("/metrics", headers={"Authorization": "Bearer look-only"})).body.decode()
    assert 'labscreen_errors_total{code="viewer_unauthorized"} 1' in text


@pytest.mark.parametrize("harness", [VIEW], indirect=True)
async def test_dashboard_redirects_to_login_without_the_token(harness: Harness) -> None:
    page = await harness.fetch("/", follow_redirects=False)
    assert page.code == 302 and page.headers["Location"].startswith("/login")


@pytest.mark.parametrize("harness", [VIEW], indirect=True)
async def test_viewer_cannot_write(harness: Harness) -> None:
    viewer = {"Authorization": "Bearer look-only"}
    body = json.dumps({"run": "r", "metrics": {"a": 1}})
    assert (await harness.fetch("/api/ingest", method="POST", body=body, headers=viewer)).code == 401
    for method in ("DELETE", "PUT", "POST"):
        reply = await harness.fetch(
            "/api/runs", method=method, headers=viewer, body=None if method == "DELETE" else "{}"
        )
        assert reply.code == 405
