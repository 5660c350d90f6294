"""Fixtures: a real LabscreenServer on port 0 in the test's own event loop, and raw wire clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.config import ServerConfig
from monitor.server import LabscreenServer
from tests.monitor.harness import Harness


@pytest.fixture
async def harness(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    settings = getattr(request, "param", {})
    config = ServerConfig.resolve(environ={}, port=0, store=str(tmp_path / "store.sqlite"), **settings)
    server = LabscreenServer(config)
    server.start()
    harness = Harness(server)
    yield harness
    for client in harness.clients:
        await client.close()
    await server.stop()
