"""A websocket upstream that records what reached it, the routes in front of it, and a valid handshake's headers."""
from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from tests.support.processes import free_port

TIMEOUT = 5.0


class WsUpstream:
    """A websocket upstream that records each handshake and how each socket closed.

    Text commands: ``info`` answers with the handshake; ``close:<code>:<reason>``
    closes with that code; ``ping:<data>`` pings the client; ``abort`` cuts the
    TCP connection. Anything else is echoed.
    """

    def __init__(self) -> None:
        self.handshakes: list[dict[str, Any]] = []
        self.closes: asyncio.Queue[tuple[int | None, str]] = asyncio.Queue()
        self.select: str | None = None  # the subprotocol to choose when offered

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/refuse"):
            return web.json_response({"no": "websockets here"}, status=403)
        if not web.WebSocketResponse().can_prepare(request).ok:
            return web.json_response({"plain": True, "headers": dict(request.headers)})
        seen = {"path": request.path, "query": request.query_string, "headers": dict(request.headers)}
        self.handshakes.append(seen)
        ws = web.WebSocketResponse(protocols=(self.select,) if self.select else ())
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                await self._command(request, ws, msg.data, seen)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            else:
                self.closes.put_nowait((ws.close_code, msg.extra if msg.type is WSMsgType.CLOSE else ""))
                return ws

    async def _command(self, request: web.Request, ws: web.WebSocketResponse, text: str, seen: dict[str, Any]) -> None:
        if text == "info":
            await ws.send_json({**seen, "protocol": ws.ws_protocol})
        elif text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await ws.close(code=int(code), message=reason.encode())
        elif text.startswith("ping:"):
            await ws.ping(text[5:].encode())
        elif text == "abort":
            assert request.transport is not None
            request.transport.abort()
        else:
            await ws.send_str(text)


@pytest.fixture
async def ws_upstream(aiohttp_server) -> tuple[WsUpstream, str]:
    upstream = WsUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = await aiohttp_server(app)
    return upstream, str(server.make_url("")).rstrip("/")


def ws_routes(url: str) -> list[dict[str, Any]]:
    token_options = {"query_param": "access_token", "subprotocol_prefix": "bearer."}
    identity = {"X-User-Id": "sub", "X-User-Roles": "roles"}
    return [
        {"name": "ws", "prefix": "/ws", "upstream": url, "websocket": True, "websocket_token": token_options, "headers": identity},
        {"name": "ws-admin", "prefix": "/wsadmin", "upstream": url, "websocket": True, "require": {"roles_any": ["admin"]}},
        {"name": "ws-fwd", "prefix": "/wsfwd", "upstream": url, "websocket": True, "websocket_token": token_options,
         "forward_authorization": True},
        {"name": "ws-open", "prefix": "/open", "upstream": url, "websocket": True, "auth": "none", "strip_prefix": True},
        {"name": "ws-maybe", "prefix": "/maybe", "upstream": url, "websocket": True, "auth": "optional", "headers": identity},
        {"name": "ws-refused", "prefix": "/refuse", "upstream": url, "websocket": True},
        {"name": "ws-down", "prefix": "/down", "upstream": f"http://127.0.0.1:{free_port()}", "websocket": True, "timeout": "2s",
         "websocket_token": token_options},
        {"name": "http-only", "prefix": "/plain", "upstream": url, "headers": identity},
    ]


def handshake_headers(**extra: str) -> dict[str, str]:
    """The headers of a valid RFC 6455 handshake, for requests that must be refused before the upgrade."""
    key = base64.b64encode(os.urandom(16)).decode()
    return {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key, **extra}
