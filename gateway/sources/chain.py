"""The ordered list of user sources: the first source that knows a login decides.

Every source is asked at once (``find`` never sees the password), so a login
costs the slowest lookup plus one password check whether it exists, and where.
Every refused login costs at least the chain's ``Decoy`` (``decoy.py``): an
unknown login is checked against it (and pays the first remote source's decoy
seen, an LDAP bind as nobody), and so is a refused login whose own check was
cheaper (a never-matching hash, a fast legacy format, a remote refusal) is topped up to it. A source that cannot answer in its timeout fails the login
with 503 ``identity_unavailable`` if it comes before the deciding source: a
later source must never decide for a login an earlier one may own.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Protocol, Sequence, TypeVar, runtime_checkable

from gateway.observe.logs import warn_repeated
from gateway.sources.base import Candidate, SourceUnavailable, TtlCache, UserSource
from gateway.sources.decoy import Decoy
from gateway.sources.users import User

__all__ = ["NOT_REREAD", "SourceEvents", "UserChain"]

log = logging.getLogger("gateway.sources")
T = TypeVar("T")
NOT_REREAD = object()  # lookup's answer when the deciding source cannot re-read users (refresh keeps claims)


@runtime_checkable
class SourceEvents(Protocol):
    """What the chain reports (gateway.metrics.Metrics implements it)."""

    def source_call(self, source: str, operation: str, result: str, seconds: float) -> None: ...


class _NoEvents:
    def source_call(self, source: str, operation: str, result: str, seconds: float) -> None: ...


class UserChain:
    decoy: Decoy

    def __init__(
        self, sources: Sequence[UserSource], events: SourceEvents | None = None, previous: "UserChain | None" = None
    ) -> None:
        if not sources:
            raise ValueError("at least one source")
        self.sources = list(sources)
        self.events: SourceEvents = events if events is not None else _NoEvents()
        self.decoy = Decoy([h for s in self.sources for h in s.held_hashes()], previous.decoy if previous else None)
        self._remote_decoy: Callable[[str], Awaitable[object]] | None = None  # the first one seen, kept
        self._caches = {s.name: TtlCache[User](s.cache_ttl) for s in self.sources if s.cache_ttl > 0}

    def __len__(self) -> int:
        """Users of the file sources (the others are not enumerable)."""
        return sum(len(s.names()) for s in self.sources)

    def names(self) -> list[str]:
        return [n for s in self.sources for n in s.names()]

    async def _call(self, source: UserSource, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(call, source.timeout)
        except (SourceUnavailable, asyncio.TimeoutError, OSError) as exc:
            reason = "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
            self.events.source_call(source.name, operation, "error", time.perf_counter() - started)
            warn_repeated(log, "user source %s: %s failed (%s)", source.name, operation, reason)
            raise SourceUnavailable(source.name) from None
        outcome = "found" if result is not None else "unknown"
        self.events.source_call(source.name, operation, outcome, time.perf_counter() - started)
        return result

    async def _first(self, operation: str, calls: list[Awaitable[T | None]]) -> tuple[UserSource, T] | None:
        """The first source (in order) with an answer; unavailable before it raises SourceUnavailable."""
        tasks = [asyncio.ensure_future(self._call(s, operation, c)) for s, c in zip(self.sources, calls, strict=True)]
        try:
            for source, task in zip(self.sources, tasks, strict=True):
                result = await task  # SourceUnavailable propagates: this source might have owned the login
                if result is not None:
                    return source, result
            return None
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def authenticate(self, login: str, password: str, by: str = "username") -> tuple[User, UserSource] | None:
        """The user and the deciding source if the password is right; None for a wrong password or unknown login."""
        await self.decoy.prepare()  # once per chain: no login pays for measuring it
        found = await self._first("find", [s.find(login, by) for s in self.sources])
        if found is None:
            await self._pay_for_unknown(password)
            return None
        source, candidate = found
        assert isinstance(candidate, Candidate)
        if candidate.decoy is not None and self._remote_decoy is None:
            self._remote_decoy = candidate.decoy
        started = time.perf_counter()
        user = await self._call(source, "check", candidate.check(password))
        spent = time.perf_counter() - started
        if candidate.stored_hash is not None:
            self.decoy.consider(candidate.stored_hash)
        if user is None:  # a refusal costs at least the decoy, whatever the user's hash
            await self.decoy.top_up(candidate.stored_hash, spent, password)
        return (user, source) if user is not None else None

    async def prepare(self) -> None:
        """Fix the decoy before serving (start, reload), so that no login waits for it to be measured."""
        await self.decoy.prepare()

    async def _pay_for_unknown(self, password: str) -> None:
        """What a refused login costs: the decoy, and the first remote decoy seen; the outcome is irrelevant."""
        await self.decoy.pay(password)
        if self._remote_decoy is None:
            return
        try:
            await asyncio.wait_for(self._remote_decoy(password), max(s.timeout for s in self.sources))
        except Exception:  # noqa: BLE001 - the decoy only spends time; the answer is "unknown" whatever happens
            pass

    async def lookup(self, username: str) -> User | object | None:
        """The user as the sources know it now (for refresh), NOT_REREAD, or None if gone or inactive.

        A source may answer with a disabled ``User``: it knows the login and refuses it, so the
        sources after it are not asked (as at login, where it checks the password and says no)."""
        calls: list[Awaitable[User | None]] = []
        for source in self.sources:
            cache = self._caches.get(source.name)
            cached = cache.get(username) if cache else None
            calls.append(_ready(cached) if cached is not None else source.lookup(username))
        found = await self._first("lookup", calls)
        if found is None:
            return NOT_REREAD if any(not s.rereads for s in self.sources) else None
        source, user = found
        if user.disabled:
            return None  # the source that knows the user says inactive: no later source may answer instead
        cache = self._caches.get(source.name)
        if cache is not None:
            cache.put(username, user)
        return user

    def remember(self, source: UserSource, user: User) -> None:
        """A user just logged in: the positive cache may answer its next refresh."""
        cache = self._caches.get(source.name)
        if cache is not None:
            cache.put(user.username, user)

    async def health(self, limit: float = 2.0) -> dict[str, str]:
        """``up`` or ``down`` per source, each bounded by its timeout and ``limit`` (for /readyz).

        Each source is asked what a login needs (``probe``: the user query or search, for a
        login nobody has), not merely whether it answers: a database that answers ``SELECT 1``
        while the users table is locked cannot log anyone in.
        """

        async def one(source: UserSource) -> str:
            try:
                await asyncio.wait_for(source.probe(), min(source.timeout, limit))
            except Exception:  # noqa: BLE001 - any failure means down; the reason is logged by the source
                return "down"
            return "up"

        states = await asyncio.gather(*(one(s) for s in self.sources))
        return dict(zip((s.name for s in self.sources), states, strict=True))

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sources), return_exceptions=True)


async def _ready(value: T) -> T:
    return value
