"""Two gateway processes on one Redis and one PostgreSQL credentials database: a WebAuthn challenge issued by one
is answered at the other (registration, second step, passkey login), a passkey enrolled through one logs in at the
other, a sign-count regression is caught whichever instance saw the last use, and a TOTP code used at one is
refused at the other. The authenticator is software (tests/support/authenticator.py): the browser's own is tested
in tests/browser; here the point is the shared state."""
from __future__ import annotations

import time
from typing import Any

import aiohttp
import pyotp
import pytest

from tests.conftest import PASSWORDS, base_config, bearer
from tests.support.authenticator import SoftAuthenticator
from tests.support.sources import Database
from tests.support.totp import clear_of_step_boundary

pytestmark = pytest.mark.slow

KEY = "credentials-sealing-key-0123456789-abcdef"
PUBLIC_URL = "https://localhost:8443"  # both instances are this one relying party behind a load balancer


@pytest.fixture
def instances(gateway_process: Any, upstream: str, users_file: Any, redis_url: str, postgres: Database) -> tuple[str, str]:
    raw = base_config(upstream, users_file, public_url=PUBLIC_URL, store={"backend": "redis", "url": redis_url},
                      credentials={"url": postgres.url(postgres.create()), "keys": [{"id": "k1", "secret": KEY}]},
                      second_factor={"webauthn": {"passkey_login": True}})
    a = f"http://127.0.0.1:{gateway_process(raw)}"
    return a, f"http://127.0.0.1:{gateway_process(raw)}"


async def post(s: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with s.post(url, **kwargs) as resp:
        return resp.status, dict(await resp.json())


async def enrol(s: aiohttp.ClientSession, begin_at: str, confirm_at: str, user: str) -> SoftAuthenticator:
    status, tokens = await post(s, begin_at + "/auth/token", json={"username": user, "password": PASSWORDS[user]})
    assert status == 200, tokens
    device = SoftAuthenticator(origin=PUBLIC_URL)
    status, begun = await post(s, begin_at + "/auth/mfa/webauthn", headers=bearer(tokens["access"]))
    assert status == 200, begun
    status, done = await post(s, confirm_at + "/auth/mfa/webauthn/confirm", headers=bearer(tokens["access"]),
                              json={"name": "key", "credential": device.create(begun["publicKey"])})
    assert status == 200, done  # a registration challenge of A answered at B
    return device


async def second_step(s: aiohttp.ClientSession, ask_at: str, answer_at: str, device: SoftAuthenticator) -> tuple[int, dict[str, Any]]:
    status, asked = await post(s, ask_at + "/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
    assert status == 401 and asked["code"] == "second_factor_required", asked
    return await post(s, answer_at + "/auth/token", json={"mfa_token": asked["mfa_token"], "webauthn": device.get(asked["webauthn"])})


async def test_challenges_and_passkeys_of_one_instance_work_at_the_other(instances: tuple[str, str]) -> None:
    a, b = instances
    async with aiohttp.ClientSession() as s:
        key = await enrol(s, a, b, "bob")
        status, body = await second_step(s, a, b, key)  # the login's challenge issued by A, answered at B
        assert status == 200, body
        status, options = await post(s, b + "/auth/mfa/passkey/options")
        assert status == 200, options
        status, body = await post(s, a + "/auth/token", json={"passkey": key.get(options["publicKey"])})
        assert status == 200, body  # enrolled through A and B, a passkey login asked at B and finished at A
        status, body = await post(s, b + "/auth/token", json={"passkey": key.get(options["publicKey"])})
        assert (status, body["code"]) == (401, "second_factor_invalid")  # the same challenge again, at the other


async def test_a_sign_count_regression_is_caught_across_instances(instances: tuple[str, str], gateway_process: Any) -> None:
    a, b = instances
    async with aiohttp.ClientSession() as s:
        key = await enrol(s, a, a, "bob")
        status, _ = await second_step(s, a, a, key)
        assert status == 200
        copy = SoftAuthenticator(origin=PUBLIC_URL, credential_id=key.credential_id, key=key.key,
                                 user_handle=key.user_handle, sign_count=key.sign_count)  # a clone, as it is now
        status, _ = await second_step(s, a, a, key)  # the original moves the count on at A
        assert status == 200
        status, body = await second_step(s, b, b, copy)  # the clone answers at B with a count already seen
        assert (status, body["code"]) == (401, "second_factor_invalid")
    assert "possible cloned WebAuthn authenticator" in gateway_process.log(int(b.rsplit(":", 1)[1]))


async def test_a_totp_code_used_at_one_instance_is_refused_at_the_other(instances: tuple[str, str]) -> None:
    a, b = instances
    async with aiohttp.ClientSession() as s:
        status, tokens = await post(s, a + "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]})
        status, begun = await post(s, a + "/auth/mfa/totp", headers=bearer(tokens["access"]))
        otp = pyotp.TOTP(begun["secret"])
        await clear_of_step_boundary()
        status, _ = await post(s, b + "/auth/mfa/totp/confirm", json={"code": otp.at(time.time() - 30)},
                               headers=bearer(tokens["access"]))
        assert status == 200
        code = otp.now()
        for url, expected in ((a, 200), (b, 401)):
            status, asked = await post(s, url + "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]})
            assert status == 401, asked
            status, body = await post(s, url + "/auth/token", json={"mfa_token": asked["mfa_token"], "code": code})
            assert status == expected, body
        assert body["code"] == "second_factor_invalid"
