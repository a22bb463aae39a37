"""store.revocation_cache: local answers kept current by Redis pub/sub, and every way it must fall back.

All against real redis-servers: commands are counted with ``INFO commandstats``,
subscriptions are killed with ``CLIENT KILL TYPE pubsub``, servers are stopped
and started, and a silent partition is a real TCP relay that stops relaying.
"""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import redis

from gateway.app import create_app
from gateway.config import ConfigError
from gateway.server.reload import restart_only_changes
from gateway.stores import RotationOutcome, StoreUnavailable
from gateway.stores.redis import RedisStore
from gateway.stores.revocation_cache import RevocationCache
from gateway.stores.revocation_feed import RevocationFeed
from tests.conftest import PASSWORDS, RedisServer, base_config, bearer, login
from tests.support.processes import eventually

PREFIX = "rc:"
# The families the checks here name, started (live) by every cache the fixture hands out: a token of a
# family the store does not know counts as revoked (a store that lost its data), see Store.is_revoked.
FAMILIES = ("f1", "f2", "f3")
WAIT = 10.0  # seconds: the longest any poll here waits (deliveries take milliseconds)


def calls(server: RedisServer | str, command: str) -> int:
    """How often the server ran ``command`` since its last CONFIG RESETSTAT."""
    client = redis.Redis.from_url(server) if isinstance(server, str) else server.client()
    with client:
        return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def revoke_silently(server: RedisServer, family: str) -> None:
    """Revoke a family in Redis the way RedisStore does, but announce nothing: an event that got lost."""
    with server.client() as client:
        client.set(f"{PREFIX}{{{family}}}:revoked", "1", px=60_000)


class Events:
    """A CacheObserver that remembers what it saw."""

    def __init__(self) -> None:
        self.lookups: dict[str, int] = {"hit": 0, "miss": 0, "bypass": 0}
        self.events = 0
        self.health: list[bool] = []

    def revocation_lookup(self, result: str) -> None:
        self.lookups[result] += 1

    def revocation_event(self) -> None:
        self.events += 1

    def revocation_subscription(self, healthy: bool) -> None:
        self.health.append(healthy)


class HeldAnswers(RedisStore):
    """The Redis store, but an ``is_revoked`` answer can be held back after Redis gave it: an in-flight check."""

    def __init__(self, url: str, **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        self.answered = asyncio.Event()
        self.release: asyncio.Event | None = None

    async def is_revoked(self, family: str, jti: str) -> bool:
        answer = await super().is_revoked(family, jti)
        if self.release is not None:
            self.answered.set()
            await self.release.wait()
        return answer


CacheFactory = Callable[..., Awaitable[RevocationCache]]


@pytest.fixture
async def caches() -> AsyncIterator[CacheFactory]:
    """Started caches on a Redis URL, healthy before they are handed out; closed after the test."""
    started: list[RevocationCache] = []

    async def make(url: str, *, inner: RedisStore | None = None, ttl: float = 60.0, **kwargs: object) -> RevocationCache:
        store = inner or RedisStore(url, prefix=PREFIX, timeout=0.5)
        kwargs.setdefault("observer", Events())
        observer = kwargs.pop("observer")
        timing = {k: kwargs.pop(k) for k in ("ping_interval", "liveness") if k in kwargs}
        feed = RevocationFeed(store, observer=observer, **timing)  # type: ignore[arg-type]
        cache = RevocationCache(store, feed, ttl=ttl, revoked_ttl=60.0, observer=observer, **kwargs)  # type: ignore[arg-type]
        for family in FAMILIES:
            await store.start_family(family, "r0", 600)
        await cache.start()
        started.append(cache)
        await healthy(cache)
        return cache

    yield make
    for cache in started:
        await cache.close()


async def healthy(cache: RevocationCache, subscriptions: int = 1) -> None:
    async def check() -> bool:
        return cache.healthy and cache.subscriptions >= subscriptions

    await eventually(check, f"subscription #{subscriptions} to be confirmed", WAIT)


async def revoked_at(cache: RevocationCache, family: str, jti: str) -> None:
    async def check() -> bool:
        return await cache.is_revoked(family, jti)

    await eventually(check, f"{family}/{jti} to be seen as revoked", WAIT)


def observer(cache: RevocationCache) -> Events:
    return cache._observer  # type: ignore[return-value]


# -- answers from the cache --------------------------------------------------------------------


async def test_cached_answers_do_not_reach_redis(caches, redis_url, redis_server):
    cache = await caches(redis_url)
    plain = RedisStore(redis_url, prefix=PREFIX)
    redis_server.client().config_resetstat()
    for _ in range(20):
        assert not await plain.is_revoked("f1", "a1")
    assert calls(redis_server, "exists") == 20  # the uncached store asks every time: the counter works
    for _ in range(20):
        assert not await cache.is_revoked("f1", "a1")
    assert calls(redis_server, "exists") == 21  # one miss, then hits
    assert observer(cache).lookups == {"hit": 19, "miss": 1, "bypass": 0}
    await plain.close()


async def test_negative_answers_expire_after_the_ttl(caches, redis_url, redis_server):
    cache = await caches(redis_url, ttl=0.2)
    assert not await cache.is_revoked("f1", "a1")
    revoke_silently(redis_server, "f1")  # behind the cache's back: no event
    assert not await cache.is_revoked("f1", "a1")  # trusted while fresh
    await asyncio.sleep(0.3)
    assert await cache.is_revoked("f1", "a1")


async def test_revoked_answers_are_kept(caches, redis_url, redis_server):
    cache = await caches(redis_url)
    redis_server.client().set(f"{PREFIX}{{f1}}:deny:a1", "1")
    assert await cache.is_revoked("f1", "a1")
    redis_server.client().config_resetstat()
    assert await cache.is_revoked("f1", "a1")
    assert calls(redis_server, "exists") == 0


async def test_own_revocations_count_at_once(caches, redis_url):
    cache = await caches(redis_url)
    assert not await cache.is_revoked("f1", "a1") and not await cache.is_revoked("f2", "a2")
    await cache.revoke_family("f1", 60)
    await cache.deny("f2", "a2", 60)
    assert await cache.is_revoked("f1", "a1")  # no wait for our own event to come back
    assert await cache.is_revoked("f2", "a2")
    assert not await cache.is_revoked("f2", "other")


# -- events between instances ------------------------------------------------------------------------


async def test_a_logout_at_one_instance_reaches_the_others_cache(caches, redis_url, redis_server):
    a, b = await caches(redis_url), await caches(redis_url)
    assert not await b.is_revoked("f1", "a1") and not await b.is_revoked("f2", "a2")
    redis_server.client().config_resetstat()
    await a.deny("f2", "a2", 60)
    await a.revoke_family("f1", 60)
    await revoked_at(b, "f1", "a1")
    await revoked_at(b, "f2", "a2")
    assert not await b.is_revoked("f2", "still-fine")  # a deny concerns one token only (asked Redis: a miss)
    assert calls(redis_server, "exists") == 1  # b learnt both revocations from the channel, not by asking
    assert observer(b).events >= 2


async def test_reuse_detected_in_rotate_is_announced(caches, redis_url):
    a, b = await caches(redis_url), await caches(redis_url)
    await a.start_family("f1", "r1", 60)
    assert not await b.is_revoked("f1", "a1")
    assert (await a.rotate("f1", "r1", "r2", "pair", 60, 0.001)).outcome is RotationOutcome.ROTATED
    await asyncio.sleep(0.01)
    assert (await a.rotate("f1", "r1", "r3", "pair", 60, 0.001)).outcome is RotationOutcome.REUSED
    await revoked_at(b, "f1", "a1")


async def test_an_instance_without_the_cache_announces_its_revocations_too(caches, redis_url):
    b = await caches(redis_url)
    plain = RedisStore(redis_url, prefix=PREFIX)  # store.revocation_cache: 0s on that instance
    assert not await b.is_revoked("f1", "a1")
    await plain.revoke_family("f1", 60)
    await revoked_at(b, "f1", "a1")
    await plain.close()


async def test_a_message_that_is_no_event_drops_the_negative_answers(caches, redis_url, redis_server):
    cache = await caches(redis_url)
    assert not await cache.is_revoked("f1", "a1")
    revoke_silently(redis_server, "f1")  # no event for this one...
    redis_server.client().publish(cache.feed.channel, "{not json")  # ...but something unreadable came

    async def dropped() -> bool:
        return await cache.is_revoked("f1", "a1")

    await eventually(dropped, "the unreadable message to clear the cache", WAIT)


async def test_a_revoked_fact_evicted_early_drops_the_negative_answers(caches, redis_url):
    """With tiny tables the family mark of f1 is pushed out; the negative answer it shadowed must go too."""
    a, b = await caches(redis_url), await caches(redis_url, max_entries=2)
    assert not await b.is_revoked("f1", "a1")
    for family in ("f1", "f2", "f3"):
        await a.revoke_family(family, 60)
    await revoked_at(b, "f3", "x")
    assert await b.is_revoked("f1", "a1")


# -- the subscription failing ---------------------------------------------------------------------------


async def test_after_a_killed_subscription_no_stale_answer_survives(caches, redis_url, redis_server):
    cache = await caches(redis_url)
    assert not await cache.is_revoked("f1", "a1")
    revoke_silently(redis_server, "f1")  # an event lost while the subscription is away
    assert not await cache.is_revoked("f1", "a1")  # (the cache trusts its subscription: this is the stale answer)
    killed = redis_server.client().client_kill_filter(_type="pubsub")
    assert killed >= 1
    await healthy(cache, subscriptions=2)
    assert await cache.is_revoked("f1", "a1")  # the negative answers went with the old subscription
    assert observer(cache).health[:3] == [True, False, True]


async def test_while_redis_is_down_every_check_goes_to_redis(caches, own_redis):
    cache = await caches(own_redis.url)
    assert not await cache.is_revoked("f1", "a1")
    assert not await cache.is_revoked("f1", "a1")  # cached
    await asyncio.to_thread(own_redis.stop)

    async def bypassing() -> bool:
        return not cache.healthy

    await eventually(bypassing, "the cache to notice the lost subscription", WAIT)
    with pytest.raises(StoreUnavailable):  # not the cached "not revoked"
        await cache.is_revoked("f1", "a1")
    await asyncio.to_thread(own_redis.start)
    revoke_silently(own_redis, "f1")  # revoked while the subscription was away
    await healthy(cache, subscriptions=2)
    for _ in range(3):  # the store's pooled connection to the old server fails once (a 503, as without the cache)
        try:
            assert await cache.is_revoked("f1", "a1")
            break
        except StoreUnavailable:
            pass
    else:
        pytest.fail("the store did not answer after the restart")


class FreezableRelay:
    """A TCP relay to Redis that can stop relaying without closing anything: a silent partition."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self.tasks.add(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_a_silently_dead_subscription_is_noticed_by_its_deadline(caches, redis_server, redis_url):
    relay = FreezableRelay(redis_server.port)
    port = await relay.start()
    try:
        cache = await caches(f"redis://127.0.0.1:{port}/0", ping_interval=0.1, liveness=0.5)
        assert not await cache.is_revoked("f1", "a1")
        assert not await cache.is_revoked("f1", "a1")  # cached
        relay.flowing.clear()  # nothing arrives any more, and nothing says so

        async def bypassing() -> bool:
            return not cache.healthy

        await eventually(bypassing, "the liveness deadline to pass", WAIT)
        with pytest.raises(StoreUnavailable):  # asked Redis (through the dead link), not the cache
            await cache.is_revoked("f1", "a1")
        assert observer(cache).lookups["bypass"] >= 1
        relay.flowing.set()
    finally:
        await relay.close()


# -- races --------------------------------------------------------------------------------------


async def test_an_event_during_an_in_flight_check_leaves_no_negative_entry(caches, redis_url):
    a = await caches(redis_url)
    held = HeldAnswers(redis_url, prefix=PREFIX)
    b = await caches(redis_url, inner=held)
    held.release = asyncio.Event()
    check = asyncio.create_task(b.is_revoked("f1", "a1"))
    await asyncio.wait_for(held.answered.wait(), WAIT)  # Redis said "not revoked"; the answer is on its way
    events = observer(b).events
    await a.revoke_family("f1", 60)

    async def delivered() -> bool:
        return observer(b).events > events

    await eventually(delivered, "the event to reach b", WAIT)
    held.release.set()
    assert await check is False  # read before the revocation: that one request may pass
    assert not b._negative.holds(("f1", "a1"), time.monotonic())  # but the answer was not cached
    assert await b.is_revoked("f1", "a1")


async def test_a_resubscription_during_an_in_flight_check_is_not_cached(caches, redis_url, redis_server):
    """The answer was read before a revocation whose event was lost with the old subscription."""
    held = HeldAnswers(redis_url, prefix=PREFIX)
    b = await caches(redis_url, inner=held)
    held.release = asyncio.Event()
    check = asyncio.create_task(b.is_revoked("f1", "a1"))
    await asyncio.wait_for(held.answered.wait(), WAIT)
    revoke_silently(redis_server, "f1")  # its event is lost...
    redis_server.client().client_kill_filter(_type="pubsub")  # ...with the subscription
    await healthy(b, subscriptions=2)
    held.release.set()
    assert await check is False
    held.release = None
    assert await b.is_revoked("f1", "a1")  # a cached stale "no" would say False here


# -- other deployments -----------------------------------------------------------------------------------


async def test_on_a_cluster(caches, cluster_node):  # noqa: F811
    url = f"redis+cluster://127.0.0.1:{cluster_node}"
    a, b = await caches(url), await caches(url)
    assert not await b.is_revoked("f1", "a1")
    await a.revoke_family("f1", 60)
    await revoked_at(b, "f1", "a1")
    before = calls(f"redis://127.0.0.1:{cluster_node}/0", "exists")
    assert await b.is_revoked("f1", "a1")
    assert calls(f"redis://127.0.0.1:{cluster_node}/0", "exists") == before


async def test_through_sentinel(caches, sentinel, redis_url):  # noqa: F811
    url = f"redis+sentinel://127.0.0.1:{sentinel}/gwmaster/0"
    a, b = await caches(url), await caches(url)
    assert not await b.is_revoked("f1", "a1")
    await a.deny("f1", "a1", 60)
    await revoked_at(b, "f1", "a1")


# -- configuration ------------------------------------------------------------------------------------------


def test_config(make_config, redis_url):
    assert make_config().store.revocation_cache == 0  # strict by default
    on = make_config(store={"backend": "redis", "url": redis_url, "revocation_cache": "5s"})
    assert on.store.revocation_cache == 5.0
    with pytest.raises(ConfigError, match=r"store: .*revocation_cache: only with backend redis"):
        make_config(store={"revocation_cache": "5s"})
    off = make_config(store={"backend": "redis", "url": redis_url})
    assert restart_only_changes(off, on) == ["store.revocation_cache: changing it needs a restart"]


# -- the gateway ---------------------------------------------------------------------------------------------


NO_ADMISSION_CACHE = {"admission_cache": 0}


def cache_store(url: str, **extra: object) -> dict[str, object]:
    return {"backend": "redis", "url": url, "prefix": PREFIX, "timeout": "0.5s", "revocation_cache": "60s", **extra}


@pytest.fixture
def cached_gateway(aiohttp_client, make_config):
    """A gateway whose store (built from its config, as in production) runs the revocation cache; the admission
    cache above it is off, so that every request reaches the revocation cache (tests/http/test_admission_cache.py)."""

    async def make(url: str, **store: object):
        return await aiohttp_client(create_app(make_config(store=cache_store(url, **store), limits=NO_ADMISSION_CACHE)))

    return make


async def metric(client, name: str) -> float:
    resp = await client.get("/metrics")
    return metric_value(await resp.text(), name)


def metric_value(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.parametrize("mode,status", [("fail_closed", 503), ("fail_open", 200)])
async def test_gateway_with_the_cache_honours_the_failure_mode(cached_gateway, own_redis, mode, status):
    gateway = await cached_gateway(own_redis.url, failure_mode=mode)

    async def subscribed() -> bool:
        return await metric(gateway, "gateway_revocation_cache_subscribed") == 1

    await eventually(subscribed, "the subscription", WAIT)
    pair = await login(gateway)
    for _ in range(3):
        assert (await gateway.get("/api/x", headers=bearer(pair["access"]))).status == 200
    assert await metric(gateway, 'gateway_revocation_cache_lookups_total{result="hit"}') >= 1
    await asyncio.to_thread(own_redis.stop)

    async def bypassing() -> bool:
        return await metric(gateway, "gateway_revocation_cache_subscribed") == 0

    await eventually(bypassing, "the subscription to be given up", WAIT)
    resp = await gateway.get("/api/x", headers=bearer(pair["access"]))
    assert resp.status == status  # under fail_closed: not a cached 200
    assert await metric(gateway, 'gateway_revocation_cache_lookups_total{result="bypass"}') >= 1


async def test_gateway_logout_is_refused_at_once_on_the_same_instance(cached_gateway, redis_url):
    gateway = await cached_gateway(redis_url)
    pair = await login(gateway)
    for _ in range(2):
        assert (await gateway.get("/api/x", headers=bearer(pair["access"]))).status == 200
    resp = await gateway.post("/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"]))
    assert resp.status == 200
    resp = await gateway.get("/api/x", headers=bearer(pair["access"]))
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


async def test_two_gateway_processes_logout_at_a_is_refused_at_b(gateway_process, upstream, users_file, redis_url):
    raw = base_config(upstream, users_file, store=cache_store(redis_url), limits=NO_ADMISSION_CACHE)
    a, b = (f"http://127.0.0.1:{gateway_process(raw)}" for _ in range(2))
    async with aiohttp.ClientSession() as s:
        async def metric_at(base: str, name: str) -> float:
            async with s.get(base + "/metrics") as resp:
                return metric_value(await resp.text(), name)

        async def get_at_b(token: str) -> int:
            async with s.get(b + "/api/x", headers=bearer(token)) as resp:
                return resp.status

        for base in (a, b):
            async def subscribed(base: str = base) -> bool:
                return await metric_at(base, "gateway_revocation_cache_subscribed") == 1

            await eventually(subscribed, "the gateway to subscribe", WAIT)
        async with s.post(a + "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]}) as r:
            pair = await r.json()
        assert [await get_at_b(pair["access"]) for _ in range(3)] == [200] * 3
        assert await metric_at(b, 'gateway_revocation_cache_lookups_total{result="hit"}') >= 1  # cached at b
        async with s.post(a + "/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"])) as r:
            assert r.status == 200

        async def refused_at_b() -> bool:
            return await get_at_b(pair["access"]) == 401

        # WAIT is far below the 60 s a cached answer may live: the event did it, not the expiry
        await eventually(refused_at_b, "the logout at a to be honoured at b", WAIT)
        assert await metric_at(b, "gateway_revocation_cache_events_total") >= 1


@pytest.mark.parametrize("delay_ms", [0, 0.5, 1, 2, 5, 10])
async def test_the_feed_stops_when_cancelled_while_redis_py_reconnects(redis_url, delay_ms):
    """A process's last step cancels every task; redis-py, reconnecting after its pool was closed, catches some
    cancellations. The feed still stops (before, a worker that could not bind its port never exited)."""
    for _ in range(8):
        store = RedisStore(redis_url, prefix=PREFIX, timeout=0.5)
        feed = RevocationFeed(store, ping_interval=0.05)
        await feed.start()
        await eventually(lambda f=feed: asyncio.sleep(0, f.healthy), "the subscription", WAIT)
        task = feed._task
        assert task is not None
        await store.close()  # what a failed start does first: the pub/sub connection breaks, redis-py reconnects
        await asyncio.sleep(delay_ms / 1000)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, "the feed went on after its cancellation"
        await feed.close()
