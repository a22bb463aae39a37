"""A store wrapper that times every operation and counts the ones that fail.

Every operation of the ``Store`` interface is timed by a typed method of its
own, so no backend has to know about metrics; nothing else is forwarded (what
needs the Redis store itself, the revocation feed, is given it where the app is
built).
"""
from __future__ import annotations

import time
from typing import Awaitable, Mapping, Protocol, TypeVar

from gateway.stores.base import RateDecision, Rotation, RotationOutcome, Store, StoreUnavailable, WindowCount

__all__ = ["InstrumentedStore", "StoreObserver"]

T = TypeVar("T")


class StoreObserver(Protocol):
    def store_call(self, operation: str, seconds: float, failed: bool) -> None: ...


class InstrumentedStore(Store):
    """Behaves as the wrapped ``Store``."""

    def __init__(self, inner: Store, observer: StoreObserver) -> None:
        self.inner = inner
        self._observer = observer

    async def _time(self, name: str, operation: Awaitable[T]) -> T:
        started = time.perf_counter()
        failed = False
        try:
            return await operation
        except StoreUnavailable:
            failed = True
            raise
        finally:
            self._observer.store_call(name, time.perf_counter() - started, failed)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self._time("ping", self.inner.ping())

    async def start_family(self, family: str, jti: str, ttl: float) -> None:
        await self._time("start_family", self.inner.start_family(family, jti, ttl))

    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        return await self._time("rotate", self.inner.rotate(family, old_jti, new_jti, successor, ttl, grace))

    async def is_current(self, family: str, jti: str) -> RotationOutcome:
        return await self._time("is_current", self.inner.is_current(family, jti))

    async def revoke_family(self, family: str, ttl: float) -> None:
        await self._time("revoke_family", self.inner.revoke_family(family, ttl))

    async def deny(self, family: str, jti: str, ttl: float) -> None:
        await self._time("deny", self.inner.deny(family, jti, ttl))

    async def is_revoked(self, family: str, jti: str) -> bool:
        return await self._time("is_revoked", self.inner.is_revoked(family, jti))

    async def track_session(self, user: str, family: str, ttl: float, cap: int) -> list[str]:
        return await self._time("track_session", self.inner.track_session(user, family, ttl, cap))

    async def user_sessions(self, user: str) -> list[str]:
        return await self._time("user_sessions", self.inner.user_sessions(user))

    async def describe_session(self, family: str, fields: Mapping[str, str], ttl: float) -> None:
        await self._time("describe_session", self.inner.describe_session(family, fields, ttl))

    async def session_details(self, family: str) -> dict[str, str] | None:
        return await self._time("session_details", self.inner.session_details(family))

    async def rate_limit(self, key: str, interval: float, capacity: int) -> RateDecision:
        return await self._time("rate_limit", self.inner.rate_limit(key, interval, capacity))

    async def incr_counter(self, key: str, window: float, amount: int = 1) -> WindowCount:
        return await self._time("incr_counter", self.inner.incr_counter(key, window, amount))

    async def reset_counter(self, key: str) -> None:
        await self._time("reset_counter", self.inner.reset_counter(key))

    async def put_once(self, key: str, value: str, ttl: float) -> bool:
        return await self._time("put_once", self.inner.put_once(key, value, ttl))

    async def take(self, key: str) -> str | None:
        return await self._time("take", self.inner.take(key))

    async def link_session(self, family: str, data: str, indexes: list[str], ttl: float) -> None:
        await self._time("link_session", self.inner.link_session(family, data, indexes, ttl))

    async def session_link(self, family: str) -> str | None:
        return await self._time("session_link", self.inner.session_link(family))

    async def linked_families(self, index: str) -> list[str]:
        return await self._time("linked_families", self.inner.linked_families(index))
