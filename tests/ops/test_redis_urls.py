"""Redis deployments: each URL form builds the right redis-py client, and the store works on real
TLS, Sentinel and Cluster servers started here (each takes well under a second)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedConnection, SentinelManagedSSLConnection

from gateway.config import ConfigError, parse_config
from gateway.redis_url import parse_redis_url
from gateway.stores import RotationOutcome, StoreUnavailable
from gateway.stores.redis import RedisStore
from gateway.stores.redis_client import close_redis_client, redis_client
from tests.conftest import base_config, free_port
from tests.support.redis_servers import start_redis, stop_servers
from tests.support.tls import certificates

# -- each URL form, the right client -------------------------------------------------------------


async def test_single_server_url():
    client = redis_client("redis://:pw@10.0.0.1:6380/3", timeout=1.0)
    pool = client.connection_pool
    assert type(client) is aioredis.Redis and pool.connection_class is Connection
    assert pool.connection_kwargs["host"] == "10.0.0.1" and pool.connection_kwargs["port"] == 6380
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "pw"
    await close_redis_client(client)


async def test_tls_url_with_options():
    client = redis_client("rediss://cache.internal:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required", timeout=1.0)
    pool = client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    await close_redis_client(client)


async def test_unix_socket_url():
    client = redis_client("unix:///run/redis.sock?db=2", timeout=1.0)
    assert client.connection_pool.connection_class is UnixDomainSocketConnection
    await close_redis_client(client)


async def test_sentinel_url():
    client = redis_client("redis+sentinel://:secret@s1:26379,s2:26380,[::1]/mymaster/2?sentinel_password=sp", timeout=0.5)
    pool = client.connection_pool
    assert type(client) is aioredis.Redis and isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster" and pool.connection_class is SentinelManagedConnection
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "secret"
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in sentinels] == [
        ("s1", 26379), ("s2", 26380), ("::1", 26379)]
    assert all(s.connection_pool.connection_kwargs["password"] == "sp" for s in sentinels)
    await close_redis_client(client)


async def test_tls_sentinel_url():
    client = redis_client("rediss+sentinel://s1/mymaster", timeout=0.5)
    assert client.connection_pool.connection_class is SentinelManagedSSLConnection
    sentinel = client.connection_pool.sentinel_manager.sentinels[0]
    assert sentinel.connection_pool.connection_class is SSLConnection
    await close_redis_client(client)


@pytest.mark.parametrize("url,tls", [("redis+cluster://u:p@n1:7000,n2:7001", False), ("rediss+cluster://n1:7000/0", True)])
async def test_cluster_url(url, tls):
    client = redis_client(url, timeout=0.5)
    assert isinstance(client, RedisCluster)
    nodes = [(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()]
    assert ("n1", 7000) in nodes
    kwargs = client.nodes_manager.connection_kwargs
    assert (kwargs.get("connection_class") is SSLConnection) == tls
    await close_redis_client(client)


@pytest.mark.parametrize(
    "url,message",
    [
        ("http://h:6379", "not a Redis URL"),
        ("redis+sentinel://h:26379", "needs the service name"),
        ("redis+sentinel://h:26379/m/x", "must be a number"),
        ("redis+cluster://h:7000/3", "only database 0"),
        ("redis+cluster://:pw@h:notaport", "not a number"),
        ("redis+sentinel://:pw@/m", "names no host"),
    ],
)
def test_bad_urls_are_config_errors_without_the_password(url, message, users_file):
    raw = base_config("http://127.0.0.1:1", users_file, store={"backend": "redis", "url": url})
    with pytest.raises(ConfigError) as err:
        parse_config(raw, Path("."))
    text = "\n".join(err.value.problems)
    assert "store" in text and message in text and "pw" not in text


def test_parse_keeps_the_password_out_of_repr():
    target = parse_redis_url("redis+sentinel://user:hunter2@h1,h2:1/svc/1")
    assert "hunter2" not in repr(target)
    assert target.hosts == (("h1", 26379), ("h2", 1)) and target.service == "svc" and target.db == 1


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="store.url"):
        redis_client("redis+cluster://h:7000?no_such_option=1", timeout=1.0)


# -- real servers ---------------------------------------------------------------------------------


async def exercise(store: RedisStore) -> None:
    """The multi-key paths (rotation script, revocation pipeline) and reuse detection, end to end."""
    await store.start()
    try:
        await store.ping()
        await store.start_family("fam1", "r1", 60)
        assert (await store.rotate("fam1", "r1", "r2", "pair2", 60, 0.001)).outcome is RotationOutcome.ROTATED
        time.sleep(0.01)
        assert (await store.rotate("fam1", "r1", "r3", "pair3", 60, 0.001)).outcome is RotationOutcome.REUSED
        assert await store.is_revoked("fam1", "any-access")
        await store.start_family("fam2", "r1", 60)  # a family the store knows (one it does not is all revoked)
        await store.deny("fam2", "a1", 60)
        assert await store.is_revoked("fam2", "a1") and not await store.is_revoked("fam2", "a2")
        assert await store.is_revoked("fam3", "a1")  # never started here, or lost with the store's data
    finally:
        await store.close()


async def test_store_through_sentinel(sentinel, redis_url):
    url = f"redis+sentinel://127.0.0.1:{sentinel}/gwmaster/0"
    await exercise(RedisStore(url, prefix="sentinel:"))
    assert redis.Redis.from_url(redis_url).exists("sentinel:{fam1}:revoked")  # it really wrote to the master


async def test_sentinel_with_unknown_service_is_unavailable(sentinel):
    store = RedisStore(f"redis+sentinel://127.0.0.1:{sentinel}/nosuchmaster", timeout=0.5)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()


async def test_store_on_a_cluster(cluster_node):
    await exercise(RedisStore(f"redis+cluster://127.0.0.1:{cluster_node}", prefix="c:"))


async def test_the_cluster_refuses_keys_without_a_shared_hash_tag(cluster_node):
    """The check the hash tags pass: without them the cluster refuses the multi-key script."""
    client = RedisCluster(host="127.0.0.1", port=cluster_node)
    with pytest.raises(Exception, match="(?i)slot"):
        await client.eval("return 1", 2, "gw:famA:fam", "gw:famB:spent:x")
    await client.aclose()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    ca, cert, key = certificates(tmp_path)
    port = free_port()
    proc = start_redis(["--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file", str(cert),
                   "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
                   "--save", "", "--appendonly", "no", "--dir", str(tmp_path)], port)
    yield port, ca
    stop_servers(proc)


async def test_store_over_tls(tls_redis):
    port, ca = tls_redis
    await exercise(RedisStore(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", prefix="tls:"))


async def test_tls_with_an_untrusted_certificate_is_unavailable(tls_redis):
    """Without the CA the handshake fails: a 503, never a silent plaintext fallback."""
    port, _ = tls_redis
    store = RedisStore(f"rediss://127.0.0.1:{port}/0", timeout=1.0)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()
