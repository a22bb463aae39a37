"""Helpers for the tests that drive a real `gateway run` process: a gated upstream and bounded polling."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiohttp import web

BOUND = 20.0  # seconds: no wait in these tests is longer


@dataclass
class GatedUpstream:
    """An upstream whose answers wait until the test releases them: in-flight requests on demand."""

    url: str = ""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    body: bytes = b"finished " * 2000

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            self.started.set()
            await self.release.wait()
            return web.Response(body=self.body, headers={"X-Seen-User": request.headers.get("X-User-Id", "")})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        return app


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = BOUND) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
