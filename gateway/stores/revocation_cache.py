"""``store.revocation_cache``: "is this access token revoked?" answered locally, kept current by pub/sub.

Without it every proxied request asks Redis. With it, each instance keeps two kinds of
bounded table beside the Redis store:

* revoked facts (a denied token, a revoked family), learnt from its own
  revocations, from Redis answering "revoked", and from the channel on which
  ``RedisStore`` announces every revocation. A revocation is never undone, so
  these are safe to keep; they live until every access token they concern has
  expired (``access_lifetime + leeway``, and never less than ``ttl``).
* "not revoked" answers per (fid, jti), trusted for at most ``ttl``.

A check looks at the revoked facts first, so a family mark shadows every
negative entry of the family (an event need not find them); dropping a revoked
fact early to make room drops every negative entry, since it may have been
shadowing one.

Staleness, i.e. how long a revocation made elsewhere can go unseen here:

* subscription healthy: the time Redis takes to deliver the message
  (milliseconds on one network);
* subscription not confirmed (starting, connection lost, reconnecting with
  backoff): none, every check asks Redis; on each (re)subscription the
  negative entries are dropped, since messages sent meanwhile are lost;
* a connection that dies silently (a partition: no FIN, no RST): the feed
  (``revocation_feed``, the process's one subscription) PINGs every
  ``ping_interval`` and gives up when nothing arrived for ``liveness``
  (redis-py's own ``health_check_interval`` swallows a missing PONG, so it
  cannot notice this); the request path checks the same deadline.
  At most ``min(ttl, liveness)``;
* in any case never more than ``ttl`` (e.g. a subscriber still answered by a
  server that no longer receives the writes): a negative entry dies then.

A Redis answer fetched while an event arrived or the subscription changed is
not cached: a generation counter, bumped on each, tells.
"""
from __future__ import annotations

import logging
import time
from typing import Generic, Hashable, Protocol, TypeVar

from gateway.stores.base import Rotation, RotationOutcome, Store, StoreWrapper
from gateway.stores.redis import RedisStore, RevocationEvent
from gateway.stores.revocation_feed import FeedObserver, RevocationFeed
from gateway.ttl import TTLMap

__all__ = ["CacheObserver", "RevocationCache", "cached_revocations", "revocation_feed"]

log = logging.getLogger("gateway.store")
K = TypeVar("K", bound=Hashable)

MAX_ENTRIES = 100_000  # per table; a full (fid, jti) table holds ~33 MB


class CacheObserver(Protocol):
    """What the cache reports for metrics (gateway.metrics.Metrics implements it)."""

    def revocation_lookup(self, result: str) -> None: ...  # hit, miss, bypass


class _NoObserver:
    def revocation_lookup(self, result: str) -> None: ...


class _Expiring(Generic[K]):
    """Keys that expire ``lifetime`` after they were added: one lifetime per table, so ``purge`` clears the old end."""

    __slots__ = ("lifetime", "_keys")

    def __init__(self, lifetime: float, limit: int) -> None:
        self.lifetime = lifetime
        self._keys: TTLMap[K, bool] = TTLMap(limit)

    def __len__(self) -> int:
        return len(self._keys)

    def holds(self, key: K, now: float) -> bool:
        return self._keys.holds(key, now)

    def add(self, key: K, now: float) -> bool:
        """Add ``key``; False if an entry still alive had to be dropped to make room."""
        dropped = self._keys.put(key, True, now + self.lifetime)
        return dropped is None or dropped <= now

    def discard(self, key: K) -> None:
        self._keys.pop(key)

    def purge(self, now: float) -> None:
        self._keys.purge(now)

    def clear(self) -> None:
        self._keys.clear()


class RevocationCache(StoreWrapper):
    """The Redis store, with ``is_revoked`` answered from a local cache while the revocation feed is alive."""

    def __init__(
        self,
        inner: Store,
        feed: RevocationFeed,
        *,
        ttl: float,
        revoked_ttl: float,
        max_entries: int = MAX_ENTRIES,
        observer: CacheObserver | None = None,
    ) -> None:
        super().__init__(inner)
        self.feed = feed
        feed.listen(self)
        self._observer: CacheObserver = observer if observer is not None else _NoObserver()
        self._negative: _Expiring[tuple[str, str]] = _Expiring(ttl, max_entries)
        self._families: _Expiring[str] = _Expiring(max(revoked_ttl, ttl), max_entries)
        self._tokens: _Expiring[tuple[str, str]] = _Expiring(max(revoked_ttl, ttl), max_entries)
        self._generation = 0

    # -- the request path -----------------------------------------------------------------

    async def is_revoked(self, family: str, jti: str) -> bool:
        now = time.monotonic()
        if not self.feed.alive(now):
            self._observer.revocation_lookup("bypass")
            return await self.inner.is_revoked(family, jti)
        key = (family, jti)
        if self._families.holds(family, now) or self._tokens.holds(key, now):
            self._observer.revocation_lookup("hit")
            return True
        if self._negative.holds(key, now):
            self._observer.revocation_lookup("hit")
            return False
        self._observer.revocation_lookup("miss")
        generation = self._generation
        revoked = await self.inner.is_revoked(family, jti)
        if revoked:
            self._mark_token(key)  # a fact, whenever it was learnt
        elif generation == self._generation and self.healthy:
            self._negative.add(key, time.monotonic())
        return revoked

    def settled(self, family: str, jti: str) -> bool:
        """Whether ``is_revoked`` would answer "not revoked" from this cache right now, without asking Redis.

        The admission cache (gateway/auth/admission_cache.py) keeps an entry only while this holds, so
        every revocation this cache learns of ends it too.
        """
        now = time.monotonic()
        if not self.feed.alive(now):
            return False
        key = (family, jti)
        if self._families.holds(family, now) or self._tokens.holds(key, now):
            return False
        return self._negative.holds(key, now)

    @property
    def healthy(self) -> bool:
        """Whether the feed is confirmed and was heard from recently enough to trust the cache."""
        return self.feed.healthy

    @property
    def subscriptions(self) -> int:
        return self.feed.subscriptions

    # -- revocations: the store's own, then noted here at once ----------------------------------

    async def deny(self, family: str, jti: str, ttl: float) -> None:
        await self.inner.deny(family, jti, ttl)
        self.revocation_event((family, jti))

    async def revoke_family(self, family: str, ttl: float) -> None:
        await self.inner.revoke_family(family, ttl)
        self.revocation_event((family, None))

    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        rotation = await self.inner.rotate(family, old_jti, new_jti, successor, ttl, grace)
        if rotation.outcome in (RotationOutcome.REUSED, RotationOutcome.REVOKED):
            self.revocation_event((family, None))
        return rotation

    def _mark_token(self, key: tuple[str, str]) -> None:
        if not self._tokens.add(key, time.monotonic()):
            self._generation += 1
            self._negative.clear()

    # -- the feed (revocation_feed.FeedListener) ----------------------------------------------------

    def revocation_event(self, event: RevocationEvent) -> None:
        self._generation += 1
        family, jti = event
        if jti is None:
            kept = self._families.add(family, time.monotonic())
        else:
            self._negative.discard((family, jti))
            kept = self._tokens.add((family, jti), time.monotonic())
        if not kept:
            self._negative.clear()  # a revoked fact left early; it may have shadowed a negative entry

    def feed_confirmed(self) -> None:
        self._generation += 1
        self._negative.clear()  # whatever was published while the feed was away is unknown

    def feed_lost(self) -> None:
        self._generation += 1
        self._negative.clear()

    def feed_tick(self, now: float) -> None:
        for table in (self._negative, self._families, self._tokens):
            table.purge(now)

    async def start(self) -> None:
        await self.inner.start()
        await self.feed.start()

    async def close(self) -> None:
        await self.feed.close()
        await self.inner.close()


def cached_revocations(store: Store, feed: RevocationFeed | None, ttl: float, revoked_ttl: float,
                       observer: CacheObserver | None = None) -> Store:
    """``store`` behind a revocation cache when ``ttl`` > 0 and there is a feed (the store is Redis), else ``store``.

    ``store`` may be the instrumented wrapper of the Redis store: the cache calls the wrapper, so store
    metrics count only the checks that reached Redis.
    """
    if ttl <= 0 or feed is None:
        return store
    return RevocationCache(store, feed, ttl=ttl, revoked_ttl=revoked_ttl, observer=observer)


def revocation_feed(store: Store, observer: FeedObserver | None = None) -> RevocationFeed | None:
    """The process's one revocation feed: for a Redis store (given as built, before any wrapper), else None."""
    if not isinstance(store, RedisStore):
        return None
    if not hasattr(store.client, "pubsub"):  # redis-py too old for pub/sub on a cluster
        log.warning("this redis-py has no pub/sub for this client: revocations are checked in Redis every time")
        return None
    return RevocationFeed(store, observer=observer)
