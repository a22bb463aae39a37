"""Open websockets end with their token: at its expiry, on its revocation, and at the route's bounds.

Close codes (sent to the client and, with the same reason, to the upstream):

====  ==================  ====================================================
4001  ``token expired``   the handshake's token passed ``exp`` + ``tokens.leeway``
4002  ``max lifetime``    the route's ``websocket_session.max_lifetime`` passed
4003  ``idle timeout``    no message either way for ``websocket_session.idle_timeout``
4004  ``token revoked``   logout, or the token's family was revoked, on any instance
====  ==================  ====================================================

A browser client reconnects with a fresh token on 4001 (after refreshing) and
must sign in again on 4004.

Revocations reach open sockets two ways: this instance's own (the store is
wrapped by ``watched_revocations``) at once, and other instances' through the
process's revocation feed (the one subscription to the Redis channel the store
publishes every revocation on). While the feed is down, events are lost, so on
each (re)subscription, every ``RECHECK`` seconds, and every ``BACKOFF[1]``
seconds during an outage, every open socket's token is checked against the
store directly.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from aiohttp import web

from gateway.observe.logs import warn_repeated
from gateway.stores import RevocationStore, Store, StoreUnavailable
from gateway.stores.base import Rotation, RotationOutcome, StoreWrapper
from gateway.stores.redis import RevocationEvent
from gateway.stores.revocation_feed import RevocationFeed

__all__ = [
    "CLOSE_IDLE", "CLOSE_MAX_LIFETIME", "CLOSE_REVOKED", "CLOSE_TOKEN_EXPIRED", "SOCKET_SESSIONS",
    "SocketSession", "SocketSessions", "watched_revocations",
]

log = logging.getLogger("gateway")

CLOSE_TOKEN_EXPIRED = 4001
CLOSE_MAX_LIFETIME = 4002
CLOSE_IDLE = 4003
CLOSE_REVOKED = 4004
RECHECK = 30.0  # seconds between direct checks of every open socket's token (the safety net)
BACKOFF = (0.1, 5.0)
CLOSE_WAIT = 1.0  # seconds the subscription may take to stop at shutdown


class SocketSession:
    """One open websocket's bounds; ``ended`` is set with the close code and reason once one is reached."""

    def __init__(self, family: str | None, jti: str | None, deadline: float | None, deadline_code: int,
                 idle_timeout: float | None) -> None:
        self.family = family
        self.jti = jti
        self.deadline = deadline  # loop time
        self.deadline_code = deadline_code
        self.idle_timeout = idle_timeout
        self.last_activity = asyncio.get_running_loop().time()
        self.ended = asyncio.Event()
        self.code = 0
        self.reason = ""

    def touch(self) -> None:
        self.last_activity = asyncio.get_running_loop().time()

    def end(self, code: int, reason: str) -> None:
        if not self.ended.is_set():
            self.code, self.reason = code, reason
            self.ended.set()

    async def wait(self) -> None:
        """Return once a bound is reached (``code`` and ``reason`` say which)."""
        loop = asyncio.get_running_loop()
        while not self.ended.is_set():
            now = loop.time()
            waits = []
            if self.deadline is not None:
                waits.append(self.deadline - now)
            if self.idle_timeout is not None:
                waits.append(self.last_activity + self.idle_timeout - now)
            if self.deadline is not None and now >= self.deadline:
                self.end(self.deadline_code, _REASONS[self.deadline_code])
            elif self.idle_timeout is not None and now >= self.last_activity + self.idle_timeout:
                self.end(CLOSE_IDLE, _REASONS[CLOSE_IDLE])
            else:
                try:
                    await asyncio.wait_for(self.ended.wait(), min(waits) if waits else None)
                except TimeoutError:
                    pass


_REASONS = {
    CLOSE_TOKEN_EXPIRED: "token expired",
    CLOSE_MAX_LIFETIME: "max lifetime",
    CLOSE_IDLE: "idle timeout",
    CLOSE_REVOKED: "token revoked",
}


class SocketSessions:
    """The open websockets of one process, by token family."""

    def __init__(self) -> None:
        self._by_family: dict[str, set[SocketSession]] = defaultdict(set)

    def open(self, claims: dict[str, Any] | None, leeway: float, route_lifetime: float | None,
             idle_timeout: float | None) -> SocketSession:
        loop = asyncio.get_running_loop()
        now_wall, now = time.time(), loop.time()
        deadline, code = None, CLOSE_MAX_LIFETIME
        if route_lifetime is not None:
            deadline = now + route_lifetime
        exp = claims.get("exp") if claims else None
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            expires = now + (exp + leeway - now_wall)
            if deadline is None or expires <= deadline:
                deadline, code = expires, CLOSE_TOKEN_EXPIRED
        family = claims.get("fid") if claims else None
        jti = claims.get("jti") if claims else None
        session = SocketSession(family if isinstance(family, str) else None, jti if isinstance(jti, str) else None,
                                deadline, code, idle_timeout)
        if session.family is not None:
            self._by_family[session.family].add(session)
        return session

    def close(self, session: SocketSession) -> None:
        if session.family is not None:
            members = self._by_family.get(session.family)
            if members is not None:
                members.discard(session)
                if not members:
                    del self._by_family[session.family]

    def revoked(self, family: str, jti: str | None) -> None:
        for session in list(self._by_family.get(family, ())):
            if jti is None or session.jti == jti:
                session.end(CLOSE_REVOKED, _REASONS[CLOSE_REVOKED])

    async def recheck(self, store: RevocationStore) -> None:
        """Ask the store about every open socket's token (events may have been lost)."""
        for family, members in list(self._by_family.items()):
            for session in list(members):
                if session.jti is not None and await store.is_revoked(family, session.jti):
                    session.end(CLOSE_REVOKED, _REASONS[CLOSE_REVOKED])

    def __len__(self) -> int:
        return sum(len(m) for m in self._by_family.values())


class _Watched(StoreWrapper):
    """A store whose revocations end this process's sockets at once, and which follows other instances' through
    the process's revocation feed (``stores.revocation_feed``; none for the one-process memory store)."""

    def __init__(self, inner: Store, sessions: SocketSessions, feed: RevocationFeed | None) -> None:
        super().__init__(inner)
        self.sessions = sessions
        self.feed = feed
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        if feed is not None:
            feed.listen(self)

    async def deny(self, family: str, jti: str, ttl: float) -> None:
        await self.inner.deny(family, jti, ttl)
        self.sessions.revoked(family, jti)

    async def revoke_family(self, family: str, ttl: float) -> None:
        await self.inner.revoke_family(family, ttl)
        self.sessions.revoked(family, None)

    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        rotation = await self.inner.rotate(family, old_jti, new_jti, successor, ttl, grace)
        if rotation.outcome in (RotationOutcome.REUSED, RotationOutcome.REVOKED):
            self.sessions.revoked(family, None)
        return rotation

    # -- the feed (stores.revocation_feed.FeedListener) ------------------------------------------

    def revocation_event(self, event: RevocationEvent) -> None:
        self.sessions.revoked(*event)

    def feed_confirmed(self) -> None:
        if self._wake is not None:
            self._wake.set()  # events sent while the feed was away are lost: ask about every socket

    def feed_lost(self) -> None:
        pass  # rechecked on the next confirmation, and every BACKOFF[1] seconds meanwhile

    def feed_tick(self, now: float) -> None:
        pass

    async def start(self) -> None:
        await self.inner.start()
        if self.feed is not None:
            await self.feed.start()
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._recheck_forever(), name="websocket-revocations")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=CLOSE_WAIT)
            self._task = None
        if self.feed is not None:
            await self.feed.close()
        await self.inner.close()

    async def _recheck_forever(self) -> None:
        """Every open socket's token asked about directly: on each (re)subscription, every ``RECHECK`` seconds
        while the feed is healthy, every ``BACKOFF[1]`` while it is not (events are being lost)."""
        assert self._wake is not None and self.feed is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), RECHECK if self.feed.healthy else BACKOFF[1])
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sessions.recheck(self)
            except StoreUnavailable:  # the store is down too: the next round tries again
                pass
            except Exception as exc:  # a bug: said (at most once a minute), and the next round tries again
                warn_repeated(log, "websocket sessions: the revocation recheck failed: %r", exc, key="websocket recheck")


def watched_revocations(store: Store, sessions: SocketSessions, feed: RevocationFeed | None) -> Store:
    return _Watched(store, sessions, feed)


SOCKET_SESSIONS = web.AppKey("socket_sessions", SocketSessions)
