"""The embedded store: deadline maps (``gateway.ttl``) in one process, each entry with its own deadline.

Single-threaded asyncio makes every method atomic. State is lost on restart:
every refresh token then answers ``token_not_valid`` and every access token is
refused as revoked (its family is unknown), so no logout is undone by a restart;
use Redis for more than one process.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from gateway.stores.base import RateDecision, Rotation, RotationOutcome, Store, WindowCount
from gateway.stores.gcra import gcra
from gateway.ttl import TTLMap

__all__ = ["MemoryStore"]

SWEEP_INTERVAL = 60.0


@dataclass(slots=True)
class _Family:
    current: str | None
    revoked: bool


class MemoryStore(Store):
    """Every record in a ``gateway.ttl.TTLMap`` (unbounded: a record is never dropped before its deadline), on
    ``clock`` (monotonic seconds; a test passes its own and moves it instead of sleeping)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._families: TTLMap[str, _Family] = TTLMap(None)
        self._spent: TTLMap[tuple[str, str], str] = TTLMap(None)  # (family, spent jti) -> the successor pair
        self._denied: TTLMap[tuple[str, str], bool] = TTLMap(None)
        self._counters: TTLMap[str, int] = TTLMap(None)
        self._rates: TTLMap[str, float] = TTLMap(None)  # key -> theoretical arrival time, until it is reached
        self._sessions: dict[str, TTLMap[str, bool]] = {}  # user -> its families, oldest first
        self._details: TTLMap[str, dict[str, str]] = TTLMap(None)  # family -> its description
        self._once: TTLMap[str, str] = TTLMap(None)
        self._links: TTLMap[str, str] = TTLMap(None)  # family -> data
        self._indexes: dict[str, TTLMap[str, bool]] = {}  # index -> its families
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def ping(self) -> None:
        return None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()

    def sweep(self) -> None:
        """Drop expired entries so memory stays bounded by live tokens."""
        now = self.clock()
        for table in (self._families, self._spent, self._denied, self._counters, self._rates, self._once, self._links,
                      self._details):
            table.sweep(now)
        for grouped in (self._sessions, self._indexes):
            for name in list(grouped):
                grouped[name].sweep(now)
                if not grouped[name]:
                    del grouped[name]

    async def rate_limit(self, key: str, interval: float, capacity: int) -> RateDecision:
        now = self.clock()
        held = self._rates.get(key, now)
        tat, decision = gcra(now if held is None else held, now, interval, capacity)
        if decision.allowed:
            self._rates.put(key, tat, tat)
        return decision

    async def track_session(self, user: str, family: str, ttl: float, cap: int) -> list[str]:
        now = self.clock()
        families = self._sessions.setdefault(user, TTLMap(None))
        families.sweep(now)
        families.put(family, True, now + ttl)
        evicted = families.alive(now)[: max(0, len(families) - cap)]
        for old in evicted:
            families.pop(old)
        return evicted

    async def user_sessions(self, user: str) -> list[str]:
        families = self._sessions.get(user)
        return [] if families is None else families.alive(self.clock())

    async def describe_session(self, family: str, fields: Mapping[str, str], ttl: float) -> None:
        now = self.clock()
        details = dict(self._details.get(family, now) or {})
        details.update(fields)
        self._details.put(family, details, now + ttl)

    async def session_details(self, family: str) -> dict[str, str] | None:
        details = self._details.get(family, self.clock())
        return None if details is None else dict(details)

    async def start_family(self, family: str, jti: str, ttl: float) -> None:
        self._families.put(family, _Family(jti, False), self.clock() + ttl)

    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        now = self.clock()
        record = self._families.get(family, now)
        if record is None:
            return Rotation(RotationOutcome.UNKNOWN)
        if record.revoked:
            return Rotation(RotationOutcome.REVOKED)
        if record.current == old_jti:
            record.current = new_jti
            self._families.put(family, record, now + ttl)
            self._spent.put((family, old_jti), successor, now + grace)
            return Rotation(RotationOutcome.ROTATED)
        prior = self._spent.get((family, old_jti), now)
        if prior is not None:
            return Rotation(RotationOutcome.GRACE, prior)
        record.current, record.revoked = None, True
        return Rotation(RotationOutcome.REUSED)

    async def is_current(self, family: str, jti: str) -> RotationOutcome:
        record = self._families.get(family, self.clock())
        if record is None:
            return RotationOutcome.UNKNOWN
        if record.revoked:
            return RotationOutcome.REVOKED
        return RotationOutcome.ROTATED if record.current == jti else RotationOutcome.REUSED

    async def revoke_family(self, family: str, ttl: float) -> None:
        now = self.clock()
        deadline = now + ttl
        if self._families.get(family, now) is not None:
            deadline = max(deadline, self._families.deadline(family) or deadline)
        self._families.put(family, _Family(None, True), deadline)

    async def deny(self, family: str, jti: str, ttl: float) -> None:
        self._denied.put((family, jti), True, self.clock() + ttl)

    async def is_revoked(self, family: str, jti: str) -> bool:
        return not self.settled(family, jti)

    def settled(self, family: str, jti: str) -> bool:
        """Not revoked, answered synchronously (the admission cache's revocation check, auth/admission_cache.py)."""
        now = self.clock()
        if self._denied.holds((family, jti), now):
            return False
        record = self._families.get(family, now)
        return record is not None and not record.revoked  # an unknown family: lost, or never started here

    async def incr_counter(self, key: str, window: float, amount: int = 1) -> WindowCount:
        now = self.clock()
        count = self._counters.get(key, now)
        if count is None and amount < 0:
            return WindowCount(0, 0.0)
        deadline = now + window if count is None else self._counters.deadline(key) or now + window
        total = (count or 0) + amount
        self._counters.put(key, total, deadline)
        return WindowCount(total, deadline - now)

    async def reset_counter(self, key: str) -> None:
        self._counters.pop(key)

    async def put_once(self, key: str, value: str, ttl: float) -> bool:
        now = self.clock()
        if self._once.holds(key, now):
            return False
        self._once.put(key, value, now + ttl)
        return True

    async def take(self, key: str) -> str | None:
        value = self._once.get(key, self.clock())
        self._once.pop(key)
        return value

    async def link_session(self, family: str, data: str, indexes: list[str], ttl: float) -> None:
        deadline = self.clock() + ttl
        self._links.put(family, data, deadline)
        for index in indexes:
            self._indexes.setdefault(index, TTLMap(None)).put(family, True, deadline)

    async def session_link(self, family: str) -> str | None:
        return self._links.get(family, self.clock())

    async def linked_families(self, index: str) -> list[str]:
        families = self._indexes.get(index)
        return [] if families is None else families.alive(self.clock())
