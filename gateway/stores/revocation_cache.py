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
* a connection that dies silently (a partition: no FIN, no RST): the listener
  PINGs every ``ping_interval`` and gives up when nothing arrived for
  ``liveness`` (redis-py's own ``health_check_interval`` swallows a missing
  PONG, so it cannot notice this); the request path checks the same deadline.
  At most ``min(ttl, liveness)``;
* in any case never more than ``ttl`` (e.g. a subscriber still answered by a
  server that no longer receives the writes): a negative entry dies then.

A Redis answer fetched while an event arrived or the subscription changed is
not cached: a generation counter, bumped on each, tells.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from typing import Any, Generic, Hashable, Protocol, TypeVar

from gateway.stores.base import Rotation, RotationOutcome, Store, StoreWrapper
from gateway.stores.redis import RevocationEvent, decode_event

__all__ = ["CacheObserver", "RevocationCache", "cached_revocations"]

log = logging.getLogger("gateway.store")
K = TypeVar("K", bound=Hashable)

MAX_ENTRIES = 100_000  # per table; a full (fid, jti) table holds ~33 MB
PING_INTERVAL = 1.0
LIVENESS = 3.0  # seconds without any message (PONGs included) before the subscription counts as dead
BACKOFF = (0.1, 5.0)  # first and longest pause between reconnection attempts
_PING = "gateway-revocation-cache"


class CacheObserver(Protocol):
    """What the cache reports for metrics (gateway.metrics.Metrics implements it)."""

    def revocation_lookup(self, result: str) -> None: ...  # hit, miss, bypass
    def revocation_event(self) -> None: ...
    def revocation_subscription(self, healthy: bool) -> None: ...


class _NoObserver:
    def revocation_lookup(self, result: str) -> None: ...
    def revocation_event(self) -> None: ...
    def revocation_subscription(self, healthy: bool) -> None: ...


class _Expiring(Generic[K]):
    """Keys with a deadline, oldest first. One lifetime per table, so insertion order is expiry order."""

    __slots__ = ("lifetime", "limit", "_items")

    def __init__(self, lifetime: float, limit: int) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._items: OrderedDict[K, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def holds(self, key: K, now: float) -> bool:
        deadline = self._items.get(key)
        if deadline is None:
            return False
        if deadline > now:
            return True
        del self._items[key]
        return False

    def add(self, key: K, now: float) -> bool:
        """Add ``key``; False if an entry still alive had to be dropped to make room."""
        items = self._items
        items.pop(key, None)
        items[key] = now + self.lifetime
        if len(items) <= self.limit:
            return True
        return items.popitem(last=False)[1] <= now

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def purge(self, now: float) -> None:
        items = self._items
        while items and next(iter(items.values())) <= now:
            items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class _Lost(Exception):
    """The subscription stopped being trustworthy (silence, unsubscribe, reconnect)."""


class RevocationCache(StoreWrapper):
    """The Redis store, with ``is_revoked`` answered from a local cache while pub/sub is healthy.

    ``client`` is the Redis store's client (its pool lends the subscription its
    own connection) and ``channel`` the one the store publishes revocations on.
    """

    def __init__(
        self,
        inner: Store,
        client: Any,
        channel: str,
        *,
        ttl: float,
        revoked_ttl: float,
        max_entries: int = MAX_ENTRIES,
        observer: CacheObserver | None = None,
        ping_interval: float = PING_INTERVAL,
        liveness: float = LIVENESS,
    ) -> None:
        super().__init__(inner)
        self.client = client
        self.channel = channel
        self._observer: CacheObserver = observer if observer is not None else _NoObserver()
        self._negative: _Expiring[tuple[str, str]] = _Expiring(ttl, max_entries)
        self._families: _Expiring[str] = _Expiring(max(revoked_ttl, ttl), max_entries)
        self._tokens: _Expiring[tuple[str, str]] = _Expiring(max(revoked_ttl, ttl), max_entries)
        self._ping_interval = ping_interval
        self._liveness = liveness
        self._generation = 0
        self._subscribed = False
        self._alive_until = 0.0  # monotonic deadline for the next sign of life from the subscription
        self.subscriptions = 0  # confirmed (re)subscriptions so far
        self._task: asyncio.Task[None] | None = None

    # -- the request path -----------------------------------------------------------------

    async def is_revoked(self, family: str, jti: str) -> bool:
        now = time.monotonic()
        if not (self._subscribed and now < self._alive_until):
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

        The decision cache (gateway/decision/cache.py) keeps an entry only while this holds, so
        every revocation this cache learns of ends it too.
        """
        now = time.monotonic()
        if not (self._subscribed and now < self._alive_until):
            return False
        key = (family, jti)
        if self._families.holds(family, now) or self._tokens.holds(key, now):
            return False
        return self._negative.holds(key, now)

    @property
    def healthy(self) -> bool:
        """Whether the subscription is confirmed and was heard from recently enough to trust the cache."""
        return self._subscribed and time.monotonic() < self._alive_until

    # -- revocations: the store's own, then noted here at once ----------------------------------

    async def deny(self, family: str, jti: str, ttl: float) -> None:
        await self.inner.deny(family, jti, ttl)
        self._apply((family, jti))

    async def revoke_family(self, family: str, ttl: float) -> None:
        await self.inner.revoke_family(family, ttl)
        self._apply((family, None))

    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        rotation = await self.inner.rotate(family, old_jti, new_jti, successor, ttl, grace)
        if rotation.outcome in (RotationOutcome.REUSED, RotationOutcome.REVOKED):
            self._apply((family, None))
        return rotation

    def _apply(self, event: RevocationEvent) -> None:
        self._generation += 1
        family, jti = event
        if jti is None:
            kept = self._families.add(family, time.monotonic())
        else:
            self._negative.discard((family, jti))
            kept = self._tokens.add((family, jti), time.monotonic())
        if not kept:
            self._negative.clear()  # a revoked fact left early; it may have shadowed a negative entry

    def _mark_token(self, key: tuple[str, str]) -> None:
        if not self._tokens.add(key, time.monotonic()):
            self._generation += 1
            self._negative.clear()

    # -- the subscription -------------------------------------------------------------------

    async def start(self) -> None:
        await self.inner.start()
        self._task = asyncio.create_task(self._follow_forever(), name="revocation-cache")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._lost()
        await self.inner.close()

    async def _follow_forever(self) -> None:
        """Subscribe, follow, and on any trouble fall back to direct checks and retry with backoff."""
        delay = BACKOFF[0]
        while True:
            confirmed_before = self.subscriptions
            try:
                await self._follow()
            except Exception as exc:  # whatever happened, the cache must not be trusted until resubscribed
                worked = self.subscriptions > confirmed_before
                if worked or delay == BACKOFF[0]:  # once per outage, not once per attempt
                    log.warning("revocation cache: subscription to %s lost (%s); checking Redis on every request "
                                "until it is back", self.channel, type(exc).__name__)
                if worked:
                    delay = BACKOFF[0]
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF[1])

    async def _follow(self) -> None:
        """Hold one subscription until it fails; every message (PONGs included) is a sign of life."""
        await self.client.initialize()  # a cluster client learns its nodes here; others do nothing
        pubsub = self.client.pubsub()
        connection = None
        try:
            await pubsub.subscribe(self.channel)
            # redis-py reconnects and resubscribes on its own, and messages sent meanwhile are lost: a loss for us
            connection = pubsub.connection
            connection.register_connect_callback(self._reconnected)
            deadline = time.monotonic() + self._liveness  # for the confirmation of the SUBSCRIBE
            next_ping = 0.0
            while True:
                now = time.monotonic()
                if self._subscribed:
                    deadline = self._alive_until
                if now >= deadline:
                    raise _Lost("no sign of life")
                if now >= next_ping:
                    await pubsub.ping(_PING)
                    next_ping = now + self._ping_interval
                    self._purge(now)
                # raw replies: redis-py's get_message cannot parse a PONG under RESP3 with decoded responses
                reply = await pubsub.parse_response(block=False, timeout=max(0.01, min(next_ping, deadline) - now))
                if reply is not None:
                    self._receive(reply)
        finally:
            self._lost()
            if connection is not None:
                connection.deregister_connect_callback(self._reconnected)
            await pubsub.aclose()

    def _receive(self, reply: Any) -> None:
        """One reply on the subscription: a confirmation, a message, or the answer to our PING."""
        now = time.monotonic()
        if self._subscribed and now >= self._alive_until:
            raise _Lost("silent")  # too late: events may be missing
        kind = _text(reply[0]) if isinstance(reply, list) and reply else "pong"  # RESP3 answers PING plainly
        if kind == "subscribe":
            self._confirmed(now)
        elif kind == "message" and len(reply) == 3:
            self._observer.revocation_event()
            try:
                self._apply(decode_event(_text(reply[2])))
            except ValueError:
                log.warning("revocation cache: a message on %s is no revocation event; dropping every cached answer",
                            self.channel)
                self._generation += 1
                self._negative.clear()
        elif kind != "pong":
            raise _Lost(kind)
        if self._subscribed:
            self._alive_until = now + self._liveness

    def _confirmed(self, now: float) -> None:
        self._generation += 1
        self._negative.clear()  # whatever was published while we were away is unknown
        self._subscribed = True
        self._alive_until = now + self._liveness
        self.subscriptions += 1
        self._observer.revocation_subscription(True)
        if self.subscriptions > 1:
            log.info("revocation cache: subscribed again to %s", self.channel)

    def _reconnected(self, connection: Any) -> None:
        self._lost()

    def _lost(self) -> None:
        self._generation += 1
        if self._subscribed:
            self._observer.revocation_subscription(False)
        self._subscribed = False
        self._negative.clear()

    def _purge(self, now: float) -> None:
        for table in (self._negative, self._families, self._tokens):
            table.purge(now)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def cached_revocations(store: Store, ttl: float, revoked_ttl: float, observer: CacheObserver | None = None) -> Store:
    """``store`` behind a revocation cache when ``ttl`` > 0 and it is a Redis store, else ``store`` itself.

    ``store`` may be a wrapper that forwards attributes (InstrumentedStore): the
    cache calls the wrapper, so store metrics count only the checks that reached Redis.
    """
    channel, client = getattr(store, "channel", None), getattr(store, "client", None)
    if ttl <= 0 or channel is None:
        return store
    if not hasattr(client, "pubsub"):  # redis-py too old for pub/sub on a cluster
        log.warning("store.revocation_cache: this redis-py has no pub/sub for this client; the cache stays off")
        return store
    return RevocationCache(store, client, channel, ttl=ttl, revoked_ttl=revoked_ttl, observer=observer)
