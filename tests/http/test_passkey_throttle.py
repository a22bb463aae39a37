"""Passkey logins are throttled per client address across instances (two gateways on one Redis): refused
assertions count in the factor throttle (`second_factor.throttle.per_ip`), the options that put a challenge in the
store count as login attempts (`login_throttle.rate_per_ip`); both answer 429 `rate_limited` with Retry-After."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, bearer, login
from tests.support.authenticator import SoftAuthenticator

KEY = "credentials-sealing-key-0123456789-abcdef"
PUBLIC_URL = "https://localhost:8443"


@pytest.fixture
def pair(make_gateway: Any, redis_url: str, tmp_path: Path) -> Callable[..., Any]:
    async def make(**overrides: Any) -> tuple[TestClient, TestClient]:
        prefix = f"passkey-{secrets.token_hex(4)}:"  # one store for both, nobody else's counters
        raw = {"public_url": PUBLIC_URL,
               "credentials": {"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]},
               "second_factor": {"webauthn": {"passkey_login": True}, "throttle": {"per_ip": 3}}, **overrides}
        one = await make_gateway(store=RedisStore(redis_url, prefix=prefix), **raw)
        two = await make_gateway(store=RedisStore(redis_url, prefix=prefix), **raw)
        return one, two

    return make


async def enrol_passkey(client: TestClient) -> SoftAuthenticator:
    access = (await login(client, "bob"))["access"]
    device = SoftAuthenticator(origin=PUBLIC_URL)
    begin = await client.post("/auth/mfa/webauthn", headers=bearer(access))
    confirm = await client.post("/auth/mfa/webauthn/confirm", headers=bearer(access),
                                json={"name": "phone", "credential": device.create((await begin.json())["publicKey"])})
    assert confirm.status == 200, await confirm.text()
    return device


async def passkey_login(client: TestClient, device: SoftAuthenticator) -> Any:
    options = await client.post("/auth/mfa/passkey/options")
    assert options.status == 200, await options.text()
    return await client.post("/auth/token", json={"passkey": device.get((await options.json())["publicKey"])})


async def test_refused_passkey_assertions_are_limited_per_address_across_instances(pair: Any) -> None:
    one, two = await pair()
    phone = await enrol_passkey(one)
    ok = await passkey_login(two, phone)  # a right one counts nothing
    assert ok.status == 200, await ok.text()
    forged = SoftAuthenticator(origin=PUBLIC_URL, credential_id=phone.credential_id, user_handle=phone.user_handle)
    for client in (one, two, one):  # per_ip: 3 refusals, on either instance
        refused = await passkey_login(client, forged)
        assert refused.status == 401 and (await refused.json())["code"] == "second_factor_invalid"
    for client in (two, one):  # then even the right passkey waits, on both
        blocked = await passkey_login(client, phone)
        assert blocked.status == 429, await blocked.text()
        assert (await blocked.json())["code"] == "rate_limited" and int(blocked.headers["Retry-After"]) > 0
    # the address's password logins are not what is limited here
    assert (await one.post("/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]})).status == 200


async def test_passkey_options_count_as_login_attempts_across_instances(pair: Any) -> None:
    one, two = await pair(login_throttle={"rate_per_ip": 4, "rate_window": "60s"})
    for client in (one, two, one, two):
        assert (await client.post("/auth/mfa/passkey/options")).status == 200
    for client in (one, two):
        blocked = await client.post("/auth/mfa/passkey/options")
        assert blocked.status == 429 and (await blocked.json())["code"] == "rate_limited"
        assert 0 < int(blocked.headers["Retry-After"]) <= 60
