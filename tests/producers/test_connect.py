"""Tests of how the producer opens its websocket: a cancelled connect leaves no connection behind."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import DefaultLoopResolver
from tornado.testing import bind_unused_port
from tornado.web import Application
from tornado.websocket import WebSocketHandler

from producers.sender import open_websocket


class _Gate:
    """A server whose upgrade answer waits until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.opened = 0
        self.closed = asyncio.Event()


class _GatedHandler(WebSocketHandler):
    def initialize(self, state: _Gate) -> None:
        self.state = state

    async def prepare(self) -> None:
        self.state.entered.set()
        await self.state.gate.wait()

    def open(self, *args: str, **kwargs: str) -> None:
        self.state.opened += 1

    def on_close(self) -> None:
        self.state.closed.set()


async def test_a_connect_cancelled_mid_handshake_closes_the_connection_it_completes() -> None:
    state = _Gate()
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/ws", _GatedHandler, {"state": state})]))
    server.add_sockets([sock])
    try:
        connecting = asyncio.create_task(
            open_websocket(HTTPRequest(f"ws://127.0.0.1:{port}/ws"), DefaultLoopResolver())
        )
        await asyncio.wait_for(state.entered.wait(), 30)
        connecting.cancel()  # as when the run finishes while its link is still being opened
        with pytest.raises(asyncio.CancelledError):
            await connecting
        state.gate.set()  # the handshake completes after all
        await asyncio.wait_for(state.closed.wait(), 30)
        assert state.opened == 1
    finally:
        server.stop()
        await server.close_all_connections()


async def test_a_connect_that_completes_returns_an_open_connection_that_sends_at_once() -> None:
    state = _Gate()
    state.gate.set()
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/ws", _GatedHandler, {"state": state})]))
    server.add_sockets([sock])
    try:
        ws = await open_websocket(HTTPRequest(f"ws://127.0.0.1:{port}/ws"), DefaultLoopResolver())
        assert ws.protocol is not None and not state.closed.is_set()
        # Nagle's algorithm off: each frame goes at once, not after the server's delayed ACK.
        assert ws.protocol.stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        ws.close(1000)
        await asyncio.wait_for(state.closed.wait(), 30)
    finally:
        server.stop()
        await server.close_all_connections()
