"""The embedded store: plain dicts in one process, each entry with its own deadline.

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

from gateway.stores.base import RateDecision, Rotation, RotationOutcome, Store, WindowCount
from gateway.stores.gcra import gcra

__all__ = ["MemoryStore"]

SWEEP_INTERVAL = 60.0


@dataclass(slots=True)
class _Family:
    current: str | None
    revoked: bool
    deadline: float


class MemoryStore(Store):
    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._spent: dict[tuple[str, str], tuple[str, float]] = {}
        self._denied: dict[tuple[str, str], float] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._rates: dict[str, float] = {}  # key -> theoretical arrival time (monotonic)
        self._sessions: dict[str, dict[str, float]] = {}  # user -> family -> deadline, oldest first
        self._once: dict[str, tuple[str, float]] = {}  # key -> (value, deadline)
        self._links: dict[str, tuple[str, float]] = {}  # family -> (data, deadline)
        self._indexes: dict[str, dict[str, float]] = {}  # index -> family -> deadline
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
        now = time.monotonic()
        self._families = {k: v for k, v in self._families.items() if v.deadline > now}
        self._spent = {k: v for k, v in self._spent.items() if v[1] > now}
        self._denied = {k: v for k, v in self._denied.items() if v > now}
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._rates = {k: v for k, v in self._rates.items() if v > now}
        self._once = {k: v for k, v in self._once.items() if v[1] > now}
        self._links = {k: v for k, v in self._links.items() if v[1] > now}
        for index in list(self._indexes):
            alive = {f: d for f, d in self._indexes[index].items() if d > now}
            if alive:
                self._indexes[index] = alive
            else:
                del self._indexes[index]
        for user in list(self._sessions):
            live = {f: d for f, d in self._sessions[user].items() if d > now}
            if live:
                self._sessions[user] = live
            else:
                del self._sessions[user]

    def _family(self, family: str) -> _Family | None:
        record = self._families.get(family)
        if record and record.deadline <= time.monotonic():
            del self._families[family]
            return None
        return record

    async def rate_limit(self, key: str, interval: float, capacity: int) -> RateDecision:
        now = time.monotonic()
        tat, decision = gcra(self._rates.get(key, now), now, interval, capacity)
        if decision.allowed:
            self._rates[key] = tat
        return decision

    async def track_session(self, user: str, family: str, ttl: float, cap: int) -> list[str]:
        now = time.monotonic()
        families = {f: d for f, d in self._sessions.get(user, {}).items() if d > now}
        families[family] = now + ttl
        evicted = list(families)[: max(0, len(families) - cap)]
        for old in evicted:
            del families[old]
        self._sessions[user] = families
        return evicted

    async def start_family(self, family: str, jti: str, ttl: float) -> None:
        self._families[family] = _Family(jti, False, time.monotonic() + ttl)

    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        record = self._family(family)
        now = time.monotonic()
        if record is None:
            return Rotation(RotationOutcome.UNKNOWN)
        if record.revoked:
            return Rotation(RotationOutcome.REVOKED)
        if record.current == old_jti:
            record.current, record.deadline = new_jti, now + ttl
            self._spent[(family, old_jti)] = (successor, now + grace)
            return Rotation(RotationOutcome.ROTATED)
        prior = self._spent.get((family, old_jti))
        if prior and prior[1] > now:
            return Rotation(RotationOutcome.GRACE, prior[0])
        record.current, record.revoked = None, True
        return Rotation(RotationOutcome.REUSED)

    async def is_current(self, family: str, jti: str) -> RotationOutcome:
        record = self._family(family)
        if record is None:
            return RotationOutcome.UNKNOWN
        if record.revoked:
            return RotationOutcome.REVOKED
        return RotationOutcome.ROTATED if record.current == jti else RotationOutcome.REUSED

    async def revoke_family(self, family: str, ttl: float) -> None:
        deadline = time.monotonic() + ttl
        record = self._family(family)
        if record is None:
            self._families[family] = _Family(None, True, deadline)
        else:
            record.current, record.revoked = None, True
            record.deadline = max(record.deadline, deadline)

    async def deny(self, family: str, jti: str, ttl: float) -> None:
        self._denied[(family, jti)] = time.monotonic() + ttl

    async def is_revoked(self, family: str, jti: str) -> bool:
        return not self.settled(family, jti)

    def settled(self, family: str, jti: str) -> bool:
        """Not revoked, answered synchronously (the admission cache's revocation check, auth/admission_cache.py)."""
        deadline = self._denied.get((family, jti))
        if deadline is not None and deadline > time.monotonic():
            return False
        record = self._family(family)
        return record is not None and not record.revoked  # an unknown family: lost, or never started here

    def _counter(self, key: str) -> tuple[int, float] | None:
        entry = self._counters.get(key)
        if entry and entry[1] <= time.monotonic():
            del self._counters[key]
            return None
        return entry

    async def incr_counter(self, key: str, window: float, amount: int = 1) -> WindowCount:
        entry = self._counter(key)
        if entry is None and amount < 0:
            return WindowCount(0, 0.0)
        count, deadline = entry or (0, time.monotonic() + window)
        self._counters[key] = (count + amount, deadline)
        return WindowCount(count + amount, deadline - time.monotonic())

    async def reset_counter(self, key: str) -> None:
        self._counters.pop(key, None)

    async def put_once(self, key: str, value: str, ttl: float) -> bool:
        now = time.monotonic()
        entry = self._once.get(key)
        if entry is not None and entry[1] > now:
            return False
        self._once[key] = (value, now + ttl)
        return True

    async def take(self, key: str) -> str | None:
        entry = self._once.pop(key, None)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    async def link_session(self, family: str, data: str, indexes: list[str], ttl: float) -> None:
        deadline = time.monotonic() + ttl
        self._links[family] = (data, deadline)
        for index in indexes:
            self._indexes.setdefault(index, {})[family] = deadline

    async def session_link(self, family: str) -> str | None:
        entry = self._links.get(family)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    async def linked_families(self, index: str) -> list[str]:
        now = time.monotonic()
        return [f for f, deadline in self._indexes.get(index, {}).items() if deadline > now]
