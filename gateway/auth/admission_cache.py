"""The admission cache: a verified caller who met a route's requirements, per (credential, route).

One cache per process, used by proxy mode and decision mode alike
(``pipeline.admit`` asks it through ``admitted``). A hit skips what depends
on the credential and the route alone: the token's verification, its
revocation check, the route's claim requirements and the claim headers
built from the caller (kept with it, ``Caller``). Everything that depends
on the request still runs on a hit: the CSRF rule (a cookie on an unsafe
method is never a key: ``cache_key``), websocket handshakes (never cached),
the rate limit, the request id, the header rewrite and the signed identity
header (reused by its own signer cache).

Revocations end an entry at once. A hit counts only while ``revocations``
settles the token's (fid, jti) as "not revoked" without asking anyone:

- the memory store answers synchronously from its own records, so a logout
  or a reuse detection ends the entry before the next request;
- with Redis, the revocation cache (``store.revocation_cache``) answers only
  while its pub/sub feed is alive and holds a fresh negative answer, so every
  revocation it hears of (its own, another instance's, a lost subscription)
  ends the entry too.

Redis without the revocation cache has nothing to settle with: no admission
cache then (every request asks Redis). Tokens of external issuers (no fid or
jti, nothing to revoke) live until their ``exp``, and no entry longer than
``MAX_AGE``, nor past ``auth_time + max_auth_age`` of a route that asks for a
recent login (step-up). Routes with ``networks`` need nothing more: the client's address
picks the route before the cache is asked, so an admission on a network's
route never serves a client outside it (tests/http/test_route_networks.py);
``auth: basic`` routes never use this cache (their pair is no part of its
key: auth/basic.py keeps verified pairs). An entry counts only for
the very route object it was checked against, so a request still running on
an old configuration cannot leave one for a reloaded route of the same name,
and a reload empties the cache. Bounded by ``limits.admission_cache``, oldest
entry first (``gateway.ttl``).
"""
from __future__ import annotations

import time
from typing import Awaitable, Callable, Protocol

from aiohttp import web

from gateway.auth.cookies import SAFE_METHODS, CookieMode
from gateway.auth.credentials import bearer_token
from gateway.auth.tokens import Claims
from gateway.config import Route
from gateway.ttl import TTLMap

__all__ = ["AdmissionCache", "Caller", "ClaimHeaders", "Revocations", "cache_key"]

Key = tuple[str, str]  # credential, route name
ClaimHeaders = tuple[tuple[str, str], ...]  # (header, encoded claim) in the route's order (upstream.headers.claim_headers)
Caller = tuple[Claims | None, ClaimHeaders]  # the verified caller, and the route's claim headers made for them
MAX_AGE = 60.0  # seconds an entry counts at most: an external issuer's key withdrawn from its JWKS is seen by then


class Revocations(Protocol):
    def settled(self, family: str, jti: str) -> bool:
        """Whether the token is known right now, without asking anyone, not to be revoked."""


def cache_key(request: web.Request, cookies: CookieMode | None) -> str | None:
    """What authenticates ``request``, as a cache key part ("" for nothing); None when a cache may not hold it.

    The order is ``authenticate``'s: the bearer token, then (cookie mode) the
    access cookie, which is cacheable only on safe methods (CSRF). Another
    Authorization scheme authenticates nobody, so it is no part of the key.
    """
    token = bearer_token(request)
    if token is not None:
        return "bearer\x00" + token
    cookie = cookies.access_token(request) if cookies is not None else None
    if cookie is None:
        return ""
    return "cookie\x00" + cookie if request.method in SAFE_METHODS else None


class AdmissionCache:
    def __init__(self, revocations: Revocations, size: int) -> None:
        self.revocations = revocations
        self._entries: TTLMap[Key, tuple[Caller, Route]] = TTLMap(size)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def admitted(self, credential: str | None, route: Route, check: Callable[[], Awaitable[Caller]]) -> Caller:
        """The caller ``check`` admits (verified, unrevoked, meeting ``route``'s requirements), remembered for
        ``credential``; ``check`` runs on a miss, and always when ``credential`` is None or "" (nothing to key)."""
        if not credential:
            return await check()
        key = (credential, route.name)
        caller = self.get(key, route)
        if caller is not None:
            return caller
        caller = await check()
        claims = caller[0]
        if claims is not None:
            exp = claims.get("exp")
            if isinstance(exp, (int, float)):
                seconds = min(exp - time.time(), MAX_AGE)  # within the leeway after exp: nothing to keep
                step_up = route.require.auth_deadline(claims)  # never past the login's max_auth_age
                if step_up is not None:
                    seconds = min(seconds, step_up - time.time())
                if seconds > 0:
                    self._entries.put(key, (caller, route), time.monotonic() + seconds)
        return caller

    def get(self, key: Key, route: Route) -> Caller | None:
        entry = self._entries.get(key, time.monotonic())
        if entry is not None:
            caller, checked = entry
            claims = caller[0]
            assert claims is not None  # only admitted callers are kept
            fid, jti = claims.get("fid"), claims.get("jti")
            unrevoked = self.revocations.settled(fid, jti) if isinstance(fid, str) and isinstance(jti, str) else True
            if checked is route and unrevoked:
                self.hits += 1
                return caller
            self._entries.pop(key)
        self.misses += 1
        return None

    def clear(self) -> None:
        self._entries.clear()
