"""A small upstream for the quick start and the tests: it echoes what reached it.

The answer shows the path, the query and every header the gateway forwarded,
so a newcomer sees the injected identity headers, and it counts the body while
streaming it, so large uploads stay cheap. A websocket handshake on any path
gets an echo socket; the text message ``/info`` answers with what the
handshake carried.
"""
from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web

__all__ = ["create_upstream"]


def _seen(request: web.Request) -> dict[str, object]:
    return {
        "upstream": "example",
        "method": request.method,
        "path": request.raw_path.split("?", 1)[0],
        "query": request.raw_path.partition("?")[2],
        "headers": dict(request.headers),
    }


async def echo_socket(request: web.Request) -> web.WebSocketResponse:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    ws = web.WebSocketResponse(protocols=offered[:1])
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT and msg.data == "/info":
            await ws.send_json({**_seen(request), "protocol": ws.ws_protocol})
        elif msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def echo(request: web.Request) -> web.StreamResponse:
    if web.WebSocketResponse().can_prepare(request).ok:
        return await echo_socket(request)
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.json_response({**_seen(request), "body_bytes": size})


def create_upstream() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    web.run_app(create_upstream(), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
