"""The redis-py client for a store URL: a plain client, a Sentinel-managed master, or a cluster.

All three speak the same commands, so ``RedisStore`` does not care which one it
holds; only construction and closing differ, and they live here.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.config import ConfigError
from gateway.redis_url import RedisTarget, parse_redis_url

__all__ = ["RedisClient", "close_redis_client", "redis_client"]

RedisClient = aioredis.Redis | RedisCluster
# Connections per process to one Redis server. The pool blocks (up to the store
# timeout) when all are busy, rather than failing at once as redis-py's default
# pool does: a burst of concurrent revocation checks queues for a few
# microseconds instead of answering 503.
POOL_SIZE = 128


def _retry_once() -> Retry:
    """One immediate retry, on a fresh connection, of a command whose pooled connection was dead.

    After a Redis restart every pooled connection is dead and fails at first use;
    without this each one turned into a 503. Only connection errors are retried,
    never timeouts: a slow Redis still answers 503 after ``store.timeout``.
    Retrying a script is safe: a command is retried only when its connection
    failed, and the rotation script answers a repeat with the same successor
    (the grace record).
    """
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
_SENTINEL_AUTH = frozenset({"sentinel_username", "sentinel_password"})


def redis_client(url: str, *, timeout: float) -> RedisClient:
    """A client that connects lazily (nothing is contacted here); bad options are a ConfigError."""
    target = parse_redis_url(url)
    common: dict[str, Any] = dict(decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout)
    if target.kind != "cluster":  # the cluster client retries (and follows the topology) on its own
        common["retry"] = _retry_once()
    try:
        if target.kind == "sentinel":
            return _sentinel_master(target, common)
        if target.kind == "cluster":
            return _cluster(target, common)
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=timeout, health_check_interval=30, retry_on_timeout=False, **common
        )
        client = aioredis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True  # aclose() closes the pool too
        return client
    except (TypeError, ValueError) as exc:
        raise ConfigError([f"store.url: unusable option ({exc})"]) from None


async def close_redis_client(client: RedisClient) -> None:
    """Close the pool, and for Sentinel the connections to the sentinels too."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def _options(target: RedisTarget, *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Query options typed by redis-py's own URL parser, plus credentials and TLS."""
    scheme = "rediss" if target.tls else "redis"
    query = urlencode([(k, v) for k, v in target.options if k not in skip])
    kwargs: dict[str, Any] = dict(parse_url(f"{scheme}://localhost/{target.db}?{query}"))  # a copy we may add keys to
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    if kwargs.pop("connection_class", None) is SSLConnection:
        kwargs["ssl"] = True
    if target.username:
        kwargs["username"] = target.username
    if target.password:
        kwargs["password"] = target.password
    return kwargs


def _sentinel_master(target: RedisTarget, common: dict[str, Any]) -> aioredis.Redis:
    options = _options(target, skip=_SENTINEL_AUTH)
    extra = dict(target.options)
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": common["socket_timeout"],
        "socket_connect_timeout": common["socket_connect_timeout"],
        **{k: v for k, v in options.items() if k == "ssl" or k.startswith("ssl_")},
    }
    if "sentinel_username" in extra:
        sentinel_kwargs["username"] = extra["sentinel_username"]
    if "sentinel_password" in extra:
        sentinel_kwargs["password"] = extra["sentinel_password"]
    sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)
    assert target.service is not None  # guaranteed by parse_redis_url
    # master_for has no return annotation in redis-py; it returns its redis_class, aioredis.Redis by default
    master: aioredis.Redis = sentinel.master_for(target.service, retry_on_timeout=False, **common, **options)
    return master


def _cluster(target: RedisTarget, common: dict[str, Any]) -> RedisCluster:
    options = _options(target)
    options.pop("db", None)
    nodes = [ClusterNode(host, port) for host, port in target.hosts]
    return RedisCluster(startup_nodes=nodes, health_check_interval=30, **common, **options)
