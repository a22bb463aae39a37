"""A small upstream for the quick start and the tests: it echoes what reached it.

The answer shows the path, the query and every header the gateway forwarded,
so a newcomer sees the injected identity headers, and it counts the body while
streaming it, so large uploads stay cheap.
"""
from __future__ import annotations

import argparse

from aiohttp import web

__all__ = ["create_upstream"]


async def echo(request: web.Request) -> web.Response:
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.json_response(
        {
            "upstream": "example",
            "method": request.method,
            "path": request.raw_path.split("?", 1)[0],
            "query": request.raw_path.partition("?")[2],
            "headers": dict(request.headers),
            "body_bytes": size,
        }
    )


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
