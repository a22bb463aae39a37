"""Process state that outlives a configuration: in-flight requests and draining.

The request middleware counts requests in and out; the server flips
``draining`` on SIGTERM and waits for ``in_flight`` to reach zero; /readyz
reads both. It lives apart from the Gateway so the endpoints can see it
without importing the app.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

__all__ = ["LIFECYCLE", "Lifecycle"]

POLL = 0.05


@dataclass
class Lifecycle:
    draining: bool = False
    in_flight: int = 0
    # False under ``store.failure_mode: fail_open``: the instance serves without the store,
    # so an unreachable store must not take it out of the load balancer.
    store_required: bool = True
    # Why the instance should take no new traffic for now (connections or an upstream pool full), or None.
    saturation: Callable[[], str | None] = field(default=lambda: None)

    async def wait_idle(self, timeout: float) -> bool:
        """True once no request is in flight, False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        while self.in_flight > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL)
        return True


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
