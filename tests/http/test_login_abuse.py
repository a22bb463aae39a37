"""Logins under abuse: only wrong passwords lock, successes are bounded too, sessions per user are capped."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from gateway.auth import throttle
from gateway.stores import MemoryStore
from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, bearer

SERVED_WITHIN = 10.0  # seconds: generous


def attempt(client, user: str, password: str | None = None, **headers: str):
    return client.post("/auth/token", json={"username": user, "password": password or "wrong"}, headers=headers)


async def test_a_burst_of_valid_logins_locks_nobody_out(make_gateway, monkeypatch):
    # 30 argon2 checks two at a time can outlast the 5 s turn wait on a loaded machine: that wait is
    # another test's subject (below), so here it is made long enough never to decide the outcome
    monkeypatch.setattr(throttle, "QUEUE_WAIT", 120.0)
    gateway = await make_gateway(login_throttle={"per_user": 5, "per_ip": 5})
    answers = await asyncio.gather(*(attempt(gateway, "alice", PASSWORDS["alice"]) for _ in range(30)))
    assert Counter(r.status for r in answers) == Counter({200: 30})
    for user in ("bob", "mallory"):  # and the address is not locked afterwards
        assert (await attempt(gateway, user, PASSWORDS[user])).status == 200


async def test_a_refused_attempt_does_not_count_as_a_failure(make_gateway):
    gateway = await make_gateway(login_throttle={"per_user": 2, "per_ip": 3})
    assert [(await attempt(gateway, "alice")).status for _ in range(2)] == [401, 401]
    statuses = [(await attempt(gateway, "alice", PASSWORDS["alice"])).status for _ in range(5)]
    assert statuses == [429] * 5  # alice is locked (two wrong passwords) ...
    assert (await attempt(gateway, "bob", PASSWORDS["bob"])).status == 200  # ... but the 429s took no slot of the address


async def test_every_attempt_of_an_address_is_rate_limited(make_gateway):
    gateway = await make_gateway(login_throttle={"attempts_per_ip": 4})
    statuses = [(await attempt(gateway, "bob", PASSWORDS["bob"])).status for _ in range(5)]
    assert statuses == [200] * 4 + [429]
    resp = await attempt(gateway, "alice", PASSWORDS["alice"])
    assert resp.status == 429 and "Retry-After" in resp.headers
    assert (await resp.json())["detail"] == "Too many login attempts from this address; try again later"
    other = {"X-Forwarded-For": "198.51.100.9"}
    gateway2 = await make_gateway(trust_forwarded_headers=True, login_throttle={"attempts_per_ip": 4})
    for _ in range(4):
        await attempt(gateway2, "mallory", PASSWORDS["mallory"], **{"X-Forwarded-For": "203.0.113.5"})
    assert (await attempt(gateway2, "bob", PASSWORDS["bob"], **other)).status == 200  # another address is served


async def test_concurrent_password_checks_are_bounded_per_address(make_gateway, monkeypatch):
    monkeypatch.setattr(throttle, "QUEUE_WAIT", 0.3)
    gateway = await make_gateway(trust_forwarded_headers=True,
                                 login_throttle={"concurrent_per_ip": 1, "concurrent_per_user": 1, "per_ip": 100})
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    flood = [attempt(gateway, "mallory", PASSWORDS["mallory"], **attacker) for _ in range(12)]
    started = time.monotonic()
    visitor = attempt(gateway, "bob", PASSWORDS["bob"], **{"X-Forwarded-For": "198.51.100.1"})
    *flooded, served = await asyncio.gather(*flood, visitor)
    assert served.status == 200 and time.monotonic() - started < SERVED_WITHIN
    codes = Counter([(r.status, (await r.json()).get("code")) for r in flooded])
    assert codes[(429, "login_busy")] > 0 and set(codes) <= {(200, None), (429, "login_busy")}
    assert (await attempt(gateway, "mallory", PASSWORDS["mallory"], **attacker)).status == 200  # nothing was counted


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_sessions_per_user_are_capped_oldest_first(make_gateway, backend, request):
    store = MemoryStore() if backend == "memory" else RedisStore(request.getfixturevalue("redis_url"))
    gateway = await make_gateway(store=store, tokens={"max_sessions_per_user": 3})
    sessions = [await (await attempt(gateway, "alice", PASSWORDS["alice"])).json() for _ in range(5)]
    other = await (await attempt(gateway, "bob", PASSWORDS["bob"])).json()
    for i, pair in enumerate(sessions):
        resp = await gateway.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
        expected = 401 if i < 2 else 200
        assert resp.status == expected, (i, await resp.text())
        if expected == 401:
            assert (await resp.json())["code"] == "token_revoked"
            assert (await gateway.get("/api/x", headers=bearer(pair["access"]))).status == 401
    resp = await gateway.post("/auth/token/refresh", json={"refresh": other["refresh"]})
    assert resp.status == 200  # another user's session is untouched
