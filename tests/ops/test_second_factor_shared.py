"""Two gateways on one Redis and one PostgreSQL (and MariaDB): a factor enrolled through one works on the other, a
code used on one is refused on the other, wrong codes on both count toward one limit, and a recovery code is spent
once whichever instance sees it."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, bearer, login
from tests.support.sources import Database
from tests.support.totp import clear_of_step_boundary

pytestmark = pytest.mark.slow

KEY = "credentials-sealing-key-0123456789-abcdef"


@pytest.fixture(params=["postgres", "mariadb"])
async def pair(request: pytest.FixtureRequest, aiohttp_client: Any, make_config: Callable[..., GatewayConfig],
               redis_url: str) -> tuple[TestClient, TestClient]:
    server: Database = request.getfixturevalue(request.param)
    url = server.url(server.create())
    config = make_config(credentials={"url": url, "keys": [{"id": "k1", "secret": KEY}]},
                         second_factor={"throttle": {"per_user": 3, "per_ip": 100}})
    one = await aiohttp_client(create_app(config, store=RedisStore(redis_url, prefix="shared:")))
    two = await aiohttp_client(create_app(config, store=RedisStore(redis_url, prefix="shared:")))
    return one, two


async def mfa_token(client: TestClient, user: str = "bob") -> str:
    resp = await client.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
    assert resp.status == 401, await resp.text()
    return str((await resp.json())["mfa_token"])


async def test_factors_codes_and_limits_are_shared(pair: tuple[TestClient, TestClient]) -> None:
    one, two = pair
    access = (await login(one, "bob"))["access"]
    start = await one.post("/auth/mfa/totp", headers=bearer(access))
    otp = pyotp.TOTP((await start.json())["secret"])
    await clear_of_step_boundary()
    confirm = await two.post("/auth/mfa/totp/confirm", json={"code": otp.at(time.time() - 30)}, headers=bearer(access))
    assert confirm.status == 200, await confirm.text()  # begun on one, confirmed on the other
    codes = (await confirm.json())["recovery_codes"]
    code = otp.now()
    first, second = await asyncio.gather(
        one.post("/auth/token", json={"mfa_token": await mfa_token(one), "code": code}),
        two.post("/auth/token", json={"mfa_token": await mfa_token(two), "code": code}),
    )
    assert sorted([first.status, second.status]) == [200, 401]  # one code, one login, across instances
    spent = await asyncio.gather(
        one.post("/auth/token", json={"mfa_token": await mfa_token(one), "recovery_code": codes[0]}),
        two.post("/auth/token", json={"mfa_token": await mfa_token(two), "recovery_code": codes[0]}),
    )
    assert sorted(r.status for r in spent) == [200, 401]
    for client in (one, two):  # wrong codes on both instances: with the two refusals above, past per_user (3)
        await client.post("/auth/token", json={"mfa_token": await mfa_token(client), "code": "000000"})
    blocked = await two.post("/auth/token", json={"mfa_token": await mfa_token(two), "code": otp.at(time.time() + 30)})
    assert blocked.status == 429 and "Retry-After" in blocked.headers
