"""The gateway's own decision cache: the verified caller per (credential, route, method), never per token alone.

A hit skips the token's verification, the revocation check and the route's
claim requirements; everything per request still runs on a hit: the rate
limit, the request id, the header rewrite and the signed identity header
(reused by its own signer cache).

It exists only with ``store.revocation_cache`` (Redis with pub/sub), and
hooks into that cache rather than following revocations a second time: a hit
counts only while the revocation cache itself would answer "not revoked" for
the token's (fid, jti) without asking Redis, so every revocation it hears of
(its own, another instance's by pub/sub, a lost subscription) ends the entry
at once. Tokens of external issuers (no revocation) live until their entry's
lifetime (``answer.lifetime``) ends. The table is bounded (``decision.cache_size``),
oldest entry dropped first, and emptied when a reload puts new routes in force; an entry
also counts only for the very route object it was checked against, so a decision still
running on the old configuration cannot leave one for a reloaded route of the same name.
"""
from __future__ import annotations

import time
from collections import OrderedDict

from gateway.auth.tokens import Claims
from gateway.config import Route
from gateway.stores.revocation_cache import RevocationCache

__all__ = ["DecisionCache"]

Key = tuple[str, str, str]  # credential, route name, method


class DecisionCache:
    def __init__(self, revocations: RevocationCache, size: int) -> None:
        self.revocations = revocations
        self.size = size
        self._entries: OrderedDict[Key, tuple[Claims, Route, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, route: Route) -> Claims | None:
        """The caller remembered for ``key``, if its entry is alive, the revocation cache still vouches for
        its token, and ``route`` is the very route it was checked against (not a reloaded one of that name)."""
        entry = self._entries.get(key)
        if entry is not None:
            claims, checked, deadline = entry
            fid, jti = claims.get("fid"), claims.get("jti")
            unrevoked = self.revocations.settled(fid, jti) if isinstance(fid, str) and isinstance(jti, str) else True
            if checked is route and time.monotonic() < deadline and unrevoked:
                self.hits += 1
                return claims
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, key: Key, claims: Claims, route: Route, seconds: float) -> None:
        if seconds <= 0 or self.size <= 0:
            return
        entries = self._entries
        entries.pop(key, None)
        entries[key] = (claims, route, time.monotonic() + seconds)
        while len(entries) > self.size:
            entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
