"""Step-up per route (RFC 9470): `require.amr_any` and `require.max_auth_age` answer 401 insufficient_user_authentication
with max_age and acr_values, distinct from 403 for roles; no bypass through a refresh or a cached admission; decision
mode answers the same."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from gateway.runtime import GATEWAY
from tests.conftest import PASSWORDS, bearer, login
from tests.support.totp import clear_of_step_boundary

KEY = "credentials-sealing-key-0123456789-abcdef"


def routes(upstream: str) -> list[dict[str, Any]]:
    return [
        {"name": "pay", "prefix": "/pay", "upstream": upstream, "require": {"acr": "mfa"},
         "headers": {"X-User-Id": "sub", "X-User-Amr": "amr", "X-User-Auth-Time": "auth_time"}},
        {"name": "adminpay", "prefix": "/adminpay", "upstream": upstream, "require": {"roles_any": ["admin"], "amr_any": ["otp"]}},
        {"name": "fresh", "prefix": "/fresh", "upstream": upstream, "require": {"max_auth_age": "2s"}},
        {"name": "api", "prefix": "/api", "upstream": upstream},
    ]


@pytest.fixture
async def client(make_gateway: Any, upstream: str, tmp_path: Path) -> TestClient:
    return await make_gateway(
        routes=routes(upstream), decision={"front": "nginx"},
        credentials={"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]}, second_factor={},
    )


async def mfa_login(client: TestClient, user: str) -> dict[str, Any]:
    access = (await login(client, user))["access"]
    start = await client.post("/auth/mfa/totp", headers=bearer(access))
    otp = pyotp.TOTP((await start.json())["secret"])
    await clear_of_step_boundary()  # the confirm's and the login's code both inside their windows
    assert (await client.post("/auth/mfa/totp/confirm", json={"code": otp.at(time.time() - 30)}, headers=bearer(access))).status == 200
    first = await client.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
    resp = await client.post("/auth/token", json={"mfa_token": (await first.json())["mfa_token"], "code": otp.now()})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


def challenge_params(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    out = {}
    for part in header[len("Bearer "):].split(", "):
        name, _, value = part.partition("=")
        out[name] = value.strip('"')
    return out


async def test_a_password_only_login_is_asked_to_step_up_and_a_factor_passes(client: TestClient) -> None:
    weak = (await login(client, "bob"))["access"]
    resp = await client.get("/pay/x", headers=bearer(weak))
    assert resp.status == 401 and (await resp.json())["code"] == "insufficient_user_authentication"
    params = challenge_params(resp.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_user_authentication" and params["acr_values"] == "mfa"
    assert (await client.get("/api/x", headers=bearer(weak))).status == 200
    strong = (await mfa_login(client, "bob"))["access"]
    ok = await client.get("/pay/x", headers=bearer(strong))
    assert ok.status == 200, await ok.text()
    seen = (await ok.json())["headers"]
    assert seen["X-User-Amr"] == "pwd,otp,mfa" and seen["X-User-Auth-Time"].isdigit()


async def test_roles_still_refuse_with_403_whatever_the_factor(client: TestClient) -> None:
    strong = (await mfa_login(client, "bob"))["access"]  # bob is no admin
    resp = await client.get("/adminpay/x", headers=bearer(strong))
    assert resp.status == 403 and (await resp.json())["code"] == "permission_denied"
    weak_admin = (await login(client, "alice"))["access"]
    resp = await client.get("/adminpay/x", headers=bearer(weak_admin))
    assert resp.status == 401 and challenge_params(resp.headers["WWW-Authenticate"])["acr_values"] == "otp"


async def test_max_auth_age_neither_refresh_nor_the_admission_cache_extends_it(client: TestClient) -> None:
    gateway = client.server.app[GATEWAY]
    assert gateway.admissions is not None  # the memory store settles revocations: the cache is on
    tokens = await login(client, "bob")
    for _ in range(3):
        assert (await client.get("/fresh/x", headers=bearer(tokens["access"]))).status == 200
    assert gateway.admissions.hits >= 2  # served from the cache
    await asyncio.sleep(2.5)
    stale = await client.get("/fresh/x", headers=bearer(tokens["access"]))
    assert stale.status == 401 and (await stale.json())["code"] == "insufficient_user_authentication"
    assert challenge_params(stale.headers["WWW-Authenticate"])["max_age"] == "2"
    refreshed = await client.post("/auth/token/refresh", json={"refresh": tokens["refresh"]})
    assert refreshed.status == 200
    again = await client.get("/fresh/x", headers=bearer((await refreshed.json())["access"]))
    assert again.status == 401  # a refresh keeps auth_time: no step-up by refreshing
    fresh = (await login(client, "bob"))["access"]
    assert (await client.get("/fresh/x", headers=bearer(fresh))).status == 200


async def test_decision_mode_answers_the_same(client: TestClient) -> None:
    weak = (await login(client, "bob"))["access"]
    proxied = await client.get("/pay/x", headers=bearer(weak))
    decided = await client.get("/auth/decide", headers={"X-Original-Method": "GET", "X-Original-URI": "/pay/x",
                                                         "Host": "app.example", **bearer(weak)})
    assert decided.status == proxied.status == 401
    assert await decided.json() == await proxied.json()
    assert decided.headers["WWW-Authenticate"] == proxied.headers["WWW-Authenticate"]


def test_decision_cache_lifetime_never_outlives_auth_time_plus_max_auth_age(make_config: Any, upstream: str) -> None:
    from gateway.decision.answer import lifetime

    config = make_config(routes=routes(upstream), decision={"front": "nginx", "max_age": "60s"},
                         store={"backend": "redis", "url": "redis://127.0.0.1:1/0", "revocation_cache": "30s"})
    fresh = next(r for r in config.routes if r.name == "fresh")
    api = next(r for r in config.routes if r.name == "api")
    now = 10_000.0
    claims = {"exp": now + 300, "auth_time": now - 1}
    assert lifetime(config, api, claims, True, now=now) == 30
    assert lifetime(config, fresh, claims, True, now=now) == 1  # auth_time + 2s - now
    assert lifetime(config, fresh, {"exp": now + 300}, True, now=now) == 0  # no auth_time: never cached
