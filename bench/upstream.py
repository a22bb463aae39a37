"""The benchmark's upstream: as cheap as an aiohttp service can be, so the proxies show.

GET (any path) answers a small JSON body echoing the ``X-User-*`` / ``X-Auth-*``
identity headers, which also lets the harness check that a proxy really
injected them.  POST bodies are read in chunks and only counted, so a 1 GB
upload costs the upstream no memory and the stream test measures the proxy.
"""
from __future__ import annotations

import argparse
import json

from aiohttp import web

IDENTITY_PREFIXES = ("x-user-", "x-auth-")


def _identity(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower().startswith(IDENTITY_PREFIXES)}


async def echo(request: web.Request) -> web.Response:
    """Small JSON body: the path and the identity headers the proxy injected."""
    body = json.dumps({"ok": True, "path": request.path, "identity": _identity(request)})
    return web.Response(text=body, content_type="application/json")


async def sink(request: web.Request) -> web.Response:
    """Read the whole body in chunks, keep only its length."""
    total = 0
    while chunk := await request.content.readany():
        total += len(chunk)
    body = json.dumps({"ok": True, "bytes": total, "identity": _identity(request)})
    return web.Response(text=body, content_type="application/json")


def make_app() -> web.Application:
    app = web.Application(client_max_size=1024**4)
    app.router.add_route("GET", "/{tail:.*}", echo)
    app.router.add_route("POST", "/{tail:.*}", sink)
    app.router.add_route("PUT", "/{tail:.*}", sink)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    args = parser.parse_args()
    loop = None
    if not args.no_uvloop:
        try:
            import uvloop
            loop = uvloop.new_event_loop()
        except ImportError:
            pass
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
