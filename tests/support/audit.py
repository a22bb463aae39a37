"""Audit test parts: the receiver's signature check exactly as docs/audit.md prints it, a real webhook receiver
(an aiohttp app that checks every delivery with it: answering, hanging or failing on demand), and reading the
events of a file sink."""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "audit.md"
WEBHOOK_SECRET = "audit-webhook-secret-for-tests-only-0123456789"

Verify = Callable[[bytes, str, bytes], bool]


def documented_verify() -> Verify:
    """The ``verify`` function of docs/audit.md's "Verifying a delivery", compiled from the page itself."""
    text = DOC.read_text(encoding="utf-8").split("### Verifying a delivery", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None, "docs/audit.md lost its verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)
    return namespace["verify"]  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """What a webhook receiver got: events of deliveries whose signature checked out, and how many did not."""

    secret: bytes = WEBHOOK_SECRET.encode()
    mode: str = "ok"  # ok: 204; hang: never answer until ``release``; fail: 500
    events: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    forged: int = 0  # deliveries refused by the documented check
    arrived: int = 0  # deliveries that reached the handler (hanging ones included)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    verify: Verify = field(default_factory=documented_verify)

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived += 1
        body = await request.read()
        if not self.verify(self.secret, request.headers.get("X-Gateway-Signature", ""), body):
            self.forged += 1
            return web.Response(status=401)
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "fail":
            return web.Response(status=500)
        self.bodies.append(body)
        self.events += [json.loads(line) for line in body.decode().splitlines()]
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/events", self.handle)
        return app


def file_events(path: Path) -> list[dict[str, Any]]:
    """Every event a file sink wrote, in order (nothing if the file is not there yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
