"""Failed-login throttling: the store's counters (both backends), and the token endpoint's 429s."""
from __future__ import annotations

import asyncio
import copy

import pytest

from gateway.config import ConfigError, parse_config
from gateway.net import ip_bucket as _ip_bucket
from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, base_config
from tests.support.clock import elapse, memory_store

# -- store contract ----------------------------------------------------------------


async def test_counter_counts_within_its_window(store):
    first = await store.incr_counter("c1", 5)
    second = await store.incr_counter("c1", 5)
    assert (first.count, second.count) == (1, 2)
    assert 4 < second.resets_in <= 5
    assert (await store.incr_counter("c2", 5)).count == 1  # counters are independent


async def test_counter_window_is_fixed_from_the_first_hit(store):
    """A 3 s window, checked 1 s in and again after it ended (Redis: margins for a loaded machine)."""
    first = await store.incr_counter("fixed", 3)
    await elapse(store, 1)
    later = await store.incr_counter("fixed", 3)  # hitting again does not extend the window
    assert later.count == 2 and later.resets_in <= first.resets_in - 0.9
    await elapse(store, later.resets_in + 0.2)
    assert (await store.incr_counter("fixed", 3)).count == 1  # decayed: a new window


async def test_counter_reset_and_give_back(store):
    for _ in range(3):
        await store.incr_counter("r", 10)
    assert (await store.incr_counter("r", 10, -1)).count == 2
    await store.reset_counter("r")
    assert (await store.incr_counter("r", 10)).count == 1
    # giving back to a counter that does not exist creates nothing
    assert (await store.incr_counter("absent", 10, -1)).count == 0
    assert (await store.incr_counter("absent", 10)).count == 1


# -- the token endpoint ------------------------------------------------------------


def attempt(client, user: str, password: str | None = None, **headers: str):
    return client.post("/auth/token", json={"username": user, "password": password or "wrong"}, headers=headers)


async def test_per_user_limit_then_decay(make_gateway):
    store = memory_store()
    gateway = await make_gateway(store=store, login_throttle={"per_user": 3, "per_ip": 100, "window": "5s"})
    for _ in range(3):
        assert (await attempt(gateway, "alice")).status == 401
    resp = await attempt(gateway, "alice", PASSWORDS["alice"])  # even the right password waits
    assert resp.status == 429
    assert await resp.json() == {"detail": "Too many failed logins; try again later", "code": "rate_limited"}
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 5
    assert (await attempt(gateway, "bob", PASSWORDS["bob"])).status == 200  # other users are untouched
    await elapse(store, retry_after + 0.2)  # as long as the answer said
    assert (await attempt(gateway, "alice", PASSWORDS["alice"])).status == 200


async def test_success_forgives_the_users_failures(make_gateway):
    gateway = await make_gateway(login_throttle={"per_user": 3, "per_ip": 100})
    for _ in range(2):
        assert (await attempt(gateway, "alice")).status == 401
    assert (await attempt(gateway, "alice", PASSWORDS["alice"])).status == 200
    statuses = [(await attempt(gateway, "alice")).status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


async def test_unknown_users_are_throttled_alike(make_gateway):
    gateway = await make_gateway(login_throttle={"per_user": 2})
    statuses = [(await attempt(gateway, "nobody")).status for _ in range(3)]
    assert statuses == [401, 401, 429]


async def test_per_ip_limit_spans_usernames_but_not_successes(make_gateway):
    gateway = await make_gateway(login_throttle={"per_user": 100, "per_ip": 3})
    for _ in range(5):  # good logins give their slot back
        assert (await attempt(gateway, "bob", PASSWORDS["bob"])).status == 200
    statuses = [(await attempt(gateway, name)).status for name in ("u1", "u2", "u3", "u4")]
    assert statuses == [401, 401, 401, 429]
    assert (await attempt(gateway, "bob", PASSWORDS["bob"])).status == 429


async def test_concurrent_guesses_cannot_exceed_the_limit(make_gateway):
    gateway = await make_gateway(login_throttle={"per_user": 3, "per_ip": 1000})
    answers = await asyncio.gather(*[attempt(gateway, "alice") for _ in range(20)])
    statuses = sorted(r.status for r in answers)
    assert statuses == [401] * 3 + [429] * 17


async def test_limits_hold_across_instances(make_gateway, redis_url):
    settings = {"per_user": 3, "per_ip": 100}
    first = await make_gateway(RedisStore(redis_url), login_throttle=settings)
    second = await make_gateway(RedisStore(redis_url), login_throttle=settings)
    assert (await attempt(first, "alice")).status == 401
    assert (await attempt(second, "alice")).status == 401
    assert (await attempt(first, "alice")).status == 401
    assert (await attempt(second, "alice", PASSWORDS["alice"])).status == 429


async def test_forwarded_for_is_ignored_unless_trusted(make_gateway):
    gateway = await make_gateway(login_throttle={"per_user": 100, "per_ip": 2})
    statuses = [(await attempt(gateway, f"u{i}", **{"X-Forwarded-For": f"10.0.0.{i}"})).status for i in range(3)]
    assert statuses == [401, 401, 429]


async def test_trusted_proxy_last_hop_is_the_client(make_gateway):
    gateway = await make_gateway(trust_forwarded_headers=True, login_throttle={"per_user": 100, "per_ip": 2})
    # the client forges leftmost entries; the proxy appended the real address last
    statuses = [(await attempt(gateway, f"u{i}", **{"X-Forwarded-For": f"6.6.6.{i}, 203.0.113.7"})).status
                for i in range(3)]
    assert statuses == [401, 401, 429]
    assert (await attempt(gateway, "u9", **{"X-Forwarded-For": "203.0.113.8"})).status == 401


async def test_throttle_can_be_disabled(make_gateway):
    gateway = await make_gateway(login_throttle={"enabled": False, "per_user": 1})
    statuses = {(await attempt(gateway, "alice")).status for _ in range(4)}
    assert statuses == {401}


def test_ip_buckets():
    assert _ip_bucket("203.0.113.7") == "203.0.113.7"
    assert _ip_bucket("2001:db8:1:2:aaaa::1") == _ip_bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert _ip_bucket("2001:db8:1:3::1") != _ip_bucket("2001:db8:1:2::1")
    assert _ip_bucket("::ffff:198.51.100.4") == "198.51.100.4"
    assert _ip_bucket("not an ip") == _ip_bucket("") == "other"


def test_throttle_config_errors(users_file, tmp_path):
    for bad, expected in (({"window": "0s"}, "between 1s and 1d"), ({"window": "30d"}, "between 1s and 1d"),
                          ({"per_user": 0}, "per_user"), ({"per_ip": -1}, "per_ip"), ({"per_usr": 3}, "unknown key"),
                          ({"rate_window": "0s"}, "between 1s and 10m"), ({"rate_window": "15m"}, "between 1s and 10m"),
                          ({"attempts_per_ip": 300}, "attempts_per_ip: removed")):
        raw = base_config("http://127.0.0.1:1", users_file, login_throttle=bad)
        with pytest.raises(ConfigError) as info:
            parse_config(copy.deepcopy(raw), tmp_path)
        assert any(expected in p for p in info.value.problems), (bad, info.value.problems)
