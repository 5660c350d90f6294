"""Wire-level test clients: a bare producer and a harness around a running server."""

from __future__ import annotations

import asyncio
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from monitor.server import LabscreenServer
from monitor.wire import Ack, Hello, Message, decode, encode


class WireClient:
    """A bare producer speaking the wire protocol directly, for server tests."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn

    async def send(self, message: Message | bytes) -> None:
        data = message if isinstance(message, bytes) else encode(message)
        await self.conn.write_message(data, binary=True)

    async def receive(self, timeout: float = 10.0) -> Message:
        data = await asyncio.wait_for(self.conn.read_message(), timeout)
        assert isinstance(data, bytes), f"connection closed: {self.conn.close_code} {self.conn.close_reason}"
        return decode(data)

    async def hello(self, run: str, stream: str = "s1", **fields: Any) -> int:
        await self.send(Hello(run=run, stream=stream, **fields))
        welcome = await self.receive()
        assert welcome.kind == "welcome", welcome
        return int(welcome.last_seq)  # type: ignore[union-attr]

    async def until_ack(self, run: str, seq: int) -> None:
        """Read replies until an ack of ``seq`` (or later) for ``run`` arrives."""
        while True:
            reply = await self.receive()
            assert reply.kind == "ack", f"expected ack, got {reply}"
            if isinstance(reply, Ack) and reply.run == run and reply.seq >= seq:
                return

    async def close(self) -> None:
        """Close and wait until the socket is really gone (no ResourceWarning)."""
        self.conn.close()
        try:
            while await asyncio.wait_for(self.conn.read_message(), 5) is not None:
                pass
        except (asyncio.TimeoutError, AssertionError):
            pass


class Harness:
    """The running server plus helpers to connect to it."""

    def __init__(self, server: LabscreenServer) -> None:
        self.server = server
        self.clients: list[WireClient] = []

    @property
    def url(self) -> str:
        return self.server.url

    async def connect(self, token: str | None = None) -> WireClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = HTTPRequest(self.url.replace("http", "ws") + "/ws/ingest", headers=headers)
        client = WireClient(await websocket_connect(request))
        self.clients.append(client)
        return client

    async def fetch(self, path: str, **kwargs: Any) -> HTTPResponse:
        return await AsyncHTTPClient().fetch(self.url + path, raise_error=False, **kwargs)

    async def flush(self) -> None:
        assert await asyncio.get_running_loop().run_in_executor(None, self.server.store.flush, 10.0)
