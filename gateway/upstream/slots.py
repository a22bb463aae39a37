"""Connections to each upstream, bounded: a full pool answers 503 ``upstream_busy`` in bounded time.

One shared pool without per-upstream bounds let stalled requests to one
upstream take every connection, and the rest waited without limit. Here each
upstream origin (scheme, host, port) has ``limits.upstream_connections`` slots;
a request waits at most ``limits.upstream_queue_timeout`` for one. Nobody may
take them all:

- one client address (its ``ip_bucket``) holds at most
  ``limits.upstream_client_share`` of an origin's slots (at least one);
- anonymous requests (no verified token) never take the last
  ``limits.upstream_reserved`` of them, so callers with a token are served
  while ``auth: none`` routes are flooded.

A request over its share waits like one in front of a full pool.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Awaitable, ClassVar

from yarl import URL

from gateway.errors import ErrorCode, GatewayError

__all__ = ["UpstreamSlots"]


class _OriginSlots:
    """One origin's slots in use, per client, and the requests waiting for a change."""

    def __init__(self, size: int, per_client: int, anonymous: int) -> None:
        self.size = size
        self.per_client_cap = per_client
        self.anonymous_cap = anonymous
        self.in_use = 0
        self.per_client: dict[str, int] = {}  # a plain dict: a Counter's missing key is a Python call, per request
        self._waiters: list[asyncio.Future[None]] = []

    def admits(self, client: str, anonymous: bool) -> bool:
        if self.in_use >= (self.anonymous_cap if anonymous else self.size):
            return False
        return self.per_client.get(client, 0) < self.per_client_cap

    def take(self, client: str) -> None:
        self.in_use += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1

    def give_back(self, client: str) -> None:
        self.in_use -= 1
        left = self.per_client[client] - 1
        if left <= 0:
            del self.per_client[client]
        else:
            self.per_client[client] = left
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:  # each re-checks its own admission
                if not waiter.done():
                    waiter.set_result(None)

    async def changed(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter


class UpstreamSlots:
    def __init__(self, per_upstream: int, queue_timeout: float, client_share: float = 1.0, reserved: float = 0.0) -> None:
        self.per_upstream = per_upstream
        self.queue_timeout = queue_timeout
        self.per_client = max(1, int(per_upstream * client_share))
        self.anonymous = max(1, per_upstream - int(per_upstream * reserved))
        self._slots: dict[str, _OriginSlots] = {}
        self._origins: dict[str, str] = {}
        self.waiting: Counter[str] = Counter()

    def origin(self, upstream: str) -> str:
        origin = self._origins.get(upstream)
        if origin is None:
            origin = self._origins[upstream] = str(URL(upstream).origin())
        return origin

    def hold(self, upstream: str, client: str = "", anonymous: bool = False) -> "_Held":
        """A slot of ``upstream``'s origin for ``client`` (an address bucket) while in ``async with``;
        ``anonymous``: no verified token."""
        origin = self.origin(upstream)
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = _OriginSlots(self.per_upstream, self.per_client, self.anonymous)
        return _Held(self, origin, slots, client, anonymous)

    async def _wait(self, origin: str, slots: _OriginSlots, client: str, anonymous: bool) -> None:
        """Until ``slots`` admits ``client``, at most ``queue_timeout`` (then 503 ``upstream_busy``)."""
        self.waiting[origin] += 1
        try:
            async with asyncio.timeout(self.queue_timeout):
                while not slots.admits(client, anonymous):
                    await slots.changed()
        except TimeoutError:
            raise GatewayError(
                503, ErrorCode.UPSTREAM_BUSY, "The upstream service has no free connection; retry shortly",
                headers={"Retry-After": "1"},
            ) from None
        finally:
            self.waiting[origin] -= 1

    @property
    def saturated(self) -> bool:
        """Whether some upstream has every connection in use and requests waiting for one.

        Requests waiting only because their address holds its share do not count: one client
        must not take the instance out of its load balancer.
        """
        return any(n > 0 and self._slots[origin].in_use >= self.per_upstream for origin, n in self.waiting.items())


class _Held:
    """One slot while ``async with`` lasts. Not coroutines: a slot free at once is taken and given back without a
    coroutine object per request (``__aenter__`` and ``__aexit__`` hand ``async with`` a future already done); only a
    request that has to wait gets one."""

    def __init__(self, owner: UpstreamSlots, origin: str, slots: _OriginSlots, client: str, anonymous: bool) -> None:
        self._owner = owner
        self._origin = origin
        self._slots = slots
        self._client = client
        self._anonymous = anonymous

    def __aenter__(self) -> Awaitable[None]:
        if self._slots.admits(self._client, self._anonymous):
            self._slots.take(self._client)
            return _done()
        return self._wait_and_take()

    async def _wait_and_take(self) -> None:
        await self._owner._wait(self._origin, self._slots, self._client, self._anonymous)
        self._slots.take(self._client)

    def __aexit__(self, *exc: object) -> Awaitable[None]:
        self._slots.give_back(self._client)
        return _done()


class _Done:
    future: ClassVar[asyncio.Future[None] | None] = None


def _done() -> asyncio.Future[None]:
    """A future already done: awaiting it returns at once, from any task (made once, on the serving loop)."""
    future = _Done.future
    if future is None:
        future = _Done.future = asyncio.get_running_loop().create_future()
        future.set_result(None)
    return future
