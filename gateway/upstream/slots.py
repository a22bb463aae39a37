"""Connections to each upstream, bounded: a full pool answers 503 ``upstream_busy`` in bounded time.

One shared pool without per-upstream bounds let stalled requests to one
upstream take every connection, and the rest waited without limit. Here each
upstream origin (scheme, host, port) has ``limits.upstream_connections`` slots;
a request waits at most ``limits.upstream_queue_timeout`` for one.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager
from typing import AsyncIterator

from yarl import URL

from gateway.errors import GatewayError

__all__ = ["UpstreamSlots"]


class UpstreamSlots:
    def __init__(self, per_upstream: int, queue_timeout: float) -> None:
        self.per_upstream = per_upstream
        self.queue_timeout = queue_timeout
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._origins: dict[str, str] = {}
        self.in_use: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()

    def origin(self, upstream: str) -> str:
        origin = self._origins.get(upstream)
        if origin is None:
            origin = self._origins[upstream] = str(URL(upstream).origin())
        return origin

    @asynccontextmanager
    async def hold(self, upstream: str) -> AsyncIterator[None]:
        origin = self.origin(upstream)
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self.per_upstream)
        if slots.locked():
            self.waiting[origin] += 1
            try:
                async with asyncio.timeout(self.queue_timeout):
                    await slots.acquire()
            except TimeoutError:
                raise GatewayError(
                    503, "upstream_busy", "The upstream service has no free connection; retry shortly",
                    headers={"Retry-After": "1"},
                ) from None
            finally:
                self.waiting[origin] -= 1
        else:
            await slots.acquire()
        self.in_use[origin] += 1
        try:
            yield
        finally:
            self.in_use[origin] -= 1
            slots.release()

    @property
    def saturated(self) -> bool:
        """Whether some upstream has every connection in use and requests waiting for one."""
        return any(n > 0 for n in self.waiting.values())
