"""Second factor at the login: TOTP enrolment with a server-made QR code, the mfa_token step at the same login endpoint,
recovery codes, amr/auth_time in the tokens, and the hostile cases (replay on one and on two instances, brute force
across instances, mfa_token reuse, expiry and use for another user, removing a required factor, enumeration)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.auth import jose
from gateway.config import GatewayConfig
from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, bearer
from tests.support.clock import elapse, memory_store
from tests.support.totp import clear_of_step_boundary

KEY = "credentials-sealing-key-0123456789-abcdef"


def factor_config(tmp_path: Path, **second_factor: Any) -> dict[str, Any]:
    return {
        "credentials": {"url": f"sqlite:///{tmp_path / 'credentials.db'}", "keys": [{"id": "k1", "secret": KEY}]},
        "second_factor": second_factor,
    }


@pytest.fixture
def make_mfa(make_gateway: Callable[..., Awaitable[TestClient]], tmp_path: Path) -> Callable[..., Awaitable[TestClient]]:
    async def make(store: Any = None, **second_factor: Any) -> TestClient:
        return await make_gateway(store=store, **factor_config(tmp_path, **second_factor))

    return make


async def password_login(client: TestClient, user: str = "alice", password: str | None = None) -> Any:
    return await client.post("/auth/token", json={"username": user, "password": password or PASSWORDS[user]})


async def tokens_of(client: TestClient, user: str = "alice") -> dict[str, Any]:
    resp = await password_login(client, user)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def enrol(client: TestClient, access: str, at: float | None = None) -> tuple[pyotp.TOTP, list[str]]:
    """TOTP enrolment with a fresh password-only login; confirmed with the code of the *previous* step, so that
    the current step's code stays unused for the test."""
    resp = await client.post("/auth/mfa/totp", headers=bearer(access))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["qr_code"].startswith("data:image/svg+xml")
    assert body["otpauth_uri"].startswith("otpauth://totp/") and body["secret"] in body["otpauth_uri"]
    svg = unquote(body["qr_code"].split(",", 1)[1])
    assert svg.startswith("<svg") and "href" not in svg and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    otp = pyotp.TOTP(body["secret"])
    if at is None:
        await clear_of_step_boundary()  # the previous step's code must still be in the window when it arrives
    at = time.time() - 30 if at is None else at
    confirm = await client.post("/auth/mfa/totp/confirm", json={"code": otp.at(at)}, headers=bearer(access))
    assert confirm.status == 200, await confirm.text()
    confirmed = await confirm.json()
    assert confirmed["methods"] == ["totp", "recovery"]
    return otp, confirmed["recovery_codes"]


async def challenged(client: TestClient, user: str = "alice") -> dict[str, Any]:
    resp = await password_login(client, user)
    assert resp.status == 401, await resp.text()
    body = dict(await resp.json())
    assert body["code"] == "second_factor_required"
    return body


async def test_users_without_a_factor_log_in_as_today_with_amr_and_auth_time(make_mfa: Any) -> None:
    client = await make_mfa()
    before = int(time.time())
    body = await tokens_of(client, "bob")
    claims = jose.peek_claims(body["access"])
    assert claims["amr"] == ["pwd"] and before <= claims["auth_time"] <= int(time.time())
    await asyncio.sleep(1.1)
    resp = await client.post("/auth/token/refresh", json={"refresh": body["refresh"]})
    assert resp.status == 200
    renewed = jose.peek_claims((await resp.json())["access"])
    assert renewed["amr"] == ["pwd"] and renewed["auth_time"] == claims["auth_time"]  # a refresh never renews it
    assert renewed["iat"] > claims["auth_time"]


async def test_enrolment_then_login_with_totp_answers_the_normal_login(make_mfa: Any) -> None:
    client = await make_mfa()
    otp, codes = await enrol(client, (await tokens_of(client))["access"])
    assert len(codes) == 10 and len(set(codes)) == 10
    body = await challenged(client)
    assert body["methods"] == ["totp", "recovery"] and body["expires_in"] == 300 and len(body["mfa_token"]) >= 32
    resp = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "code": otp.now()})
    assert resp.status == 200, await resp.text()
    tokens = await resp.json()
    assert set(tokens) == set(await tokens_of(client, "bob"))  # exactly the login's own answer
    assert jose.peek_claims(tokens["access"])["amr"] == ["pwd", "otp", "mfa"]
    refreshed = await client.post("/auth/token/refresh", json={"refresh": tokens["refresh"]})
    assert jose.peek_claims((await refreshed.json())["access"])["amr"] == ["pwd", "otp", "mfa"]
    me = await client.get("/auth/me", headers=bearer(tokens["access"]))
    assert me.status == 200
    listing = await client.get("/auth/mfa", headers=bearer(tokens["access"]))
    assert await listing.json() == {"methods": ["totp", "recovery"], "required": False, "recovery_codes_left": 10}


async def test_a_totp_code_is_accepted_once(make_mfa: Any) -> None:
    client = await make_mfa()
    enrolled_at = time.time() - 30
    otp, _ = await enrol(client, (await tokens_of(client))["access"], at=enrolled_at)
    code = otp.now()
    first = await client.post("/auth/token", json={"mfa_token": (await challenged(client))["mfa_token"], "code": code})
    assert first.status == 200
    again = await client.post("/auth/token", json={"mfa_token": (await challenged(client))["mfa_token"], "code": code})
    assert again.status == 401 and (await again.json())["code"] == "second_factor_invalid"
    confirm_code = otp.at(enrolled_at)  # the step enrolment used is spent too (or out of the window by now)
    third = await client.post("/auth/token", json={"mfa_token": (await challenged(client))["mfa_token"], "code": confirm_code})
    assert third.status == 401


async def test_replay_and_brute_force_across_two_instances_on_one_redis(
    aiohttp_client: Any, make_config: Callable[..., GatewayConfig], redis_url: str, tmp_path: Path
) -> None:
    config = make_config(**factor_config(tmp_path, throttle={"per_user": 4, "per_ip": 100}))
    one = await aiohttp_client(create_app(config, store=RedisStore(redis_url, prefix="mfa1:")))
    two = await aiohttp_client(create_app(config, store=RedisStore(redis_url, prefix="mfa1:")))
    otp, _ = await enrol(one, (await tokens_of(one))["access"])
    code = otp.now()
    ok = await one.post("/auth/token", json={"mfa_token": (await challenged(one))["mfa_token"], "code": code})
    assert ok.status == 200
    replay = await two.post("/auth/token", json={"mfa_token": (await challenged(two))["mfa_token"], "code": code})
    assert replay.status == 401 and (await replay.json())["code"] == "second_factor_invalid"  # the step is spent everywhere
    wrong = f"{(int(code) + 500000) % 1000000:06d}"
    for i in range(3):  # with the replay: four failures, alternating instances
        client = (one, two)[i % 2]
        resp = await client.post("/auth/token", json={"mfa_token": (await challenged(client))["mfa_token"], "code": wrong})
        assert resp.status == 401
    for client in (one, two):  # over the limit on both instances, even with a right code
        resp = await client.post("/auth/token", json={"mfa_token": (await challenged(client))["mfa_token"],
                                                      "code": otp.at(time.time() + 30)})
        assert resp.status == 429 and (await resp.json())["code"] == "rate_limited" and "Retry-After" in resp.headers


async def test_mfa_token_is_single_use_bounded_in_attempts_and_belongs_to_its_user(make_mfa: Any) -> None:
    client = await make_mfa()
    alice_otp, _ = await enrol(client, (await tokens_of(client, "alice"))["access"])
    bob_otp, _ = await enrol(client, (await tokens_of(client, "bob"))["access"])
    token = (await challenged(client, "alice"))["mfa_token"]
    bobs_code = await client.post("/auth/token", json={"mfa_token": token, "code": bob_otp.now()})
    assert bobs_code.status == 401  # alice's token with bob's code: checked against alice's secret
    ok = await client.post("/auth/token", json={"mfa_token": token, "code": alice_otp.now()})
    assert ok.status == 200 and jose.peek_claims((await ok.json())["access"])["sub"] == "alice"
    reuse = await client.post("/auth/token", json={"mfa_token": token, "code": alice_otp.at(time.time() + 30)})
    assert reuse.status == 401 and (await reuse.json())["code"] == "mfa_token_invalid"
    token = (await challenged(client, "bob"))["mfa_token"]
    for _ in range(3):  # three wrong codes spend the token
        assert (await client.post("/auth/token", json={"mfa_token": token, "code": "000000"})).status == 401
    spent = await client.post("/auth/token", json={"mfa_token": token, "code": bob_otp.now()})
    assert (await spent.json())["code"] == "mfa_token_invalid"
    forged = await client.post("/auth/token", json={"mfa_token": "x" * 43, "code": bob_otp.now()})
    assert forged.status == 401 and (await forged.json())["code"] == "mfa_token_invalid"


async def test_an_expired_mfa_token_is_refused(make_mfa: Any) -> None:
    store = memory_store()
    client = await make_mfa(store=store)
    otp, _ = await enrol(client, (await tokens_of(client))["access"])
    token = (await challenged(client))["mfa_token"]
    await elapse(store, 301)
    resp = await client.post("/auth/token", json={"mfa_token": token, "code": otp.now()})
    assert resp.status == 401 and (await resp.json())["code"] == "mfa_token_invalid"


async def test_recovery_codes_are_single_use(make_mfa: Any) -> None:
    client = await make_mfa()
    _, codes = await enrol(client, (await tokens_of(client))["access"])
    typed = codes[3].upper().replace("-", " ")  # as a person types it
    ok = await client.post("/auth/token", json={"mfa_token": (await challenged(client))["mfa_token"], "recovery_code": typed})
    assert ok.status == 200, await ok.text()
    again = await client.post("/auth/token", json={"mfa_token": (await challenged(client))["mfa_token"], "recovery_code": codes[3]})
    assert again.status == 401
    body = await challenged(client)
    listing = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "recovery_code": codes[0]})
    left = await client.get("/auth/mfa", headers=bearer((await listing.json())["access"]))
    assert (await left.json())["recovery_codes_left"] == 8


async def test_a_stolen_password_only_session_cannot_swap_the_factor(make_mfa: Any) -> None:
    client = await make_mfa()
    old = (await tokens_of(client))["access"]  # a session from before the user enrolled
    await enrol(client, (await tokens_of(client))["access"])
    resp = await client.post("/auth/mfa/totp", headers=bearer(old))
    assert resp.status == 401 and (await resp.json())["code"] == "insufficient_user_authentication"
    challenge = resp.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge and 'max_age="300"' in challenge
    for method, path in (("DELETE", "/auth/mfa/totp"), ("POST", "/auth/mfa/recovery-codes")):
        assert (await client.request(method, path, headers=bearer(old))).status == 401


async def test_a_user_who_must_have_a_factor_cannot_remove_it(make_mfa: Any) -> None:
    client = await make_mfa(roles=["admin"])
    resp = await password_login(client, "alice")  # alice is an admin: required, none yet
    body = await resp.json()
    assert resp.status == 401 and body["methods"] == [] and body["enrol"] == "/auth/mfa/totp"
    token = body["mfa_token"]
    start = await client.post("/auth/mfa/totp", json={"mfa_token": token})
    otp = pyotp.TOTP((await start.json())["secret"])
    early = await client.post("/auth/token", json={"mfa_token": token, "code": otp.now()})  # not confirmed yet: no factor
    assert early.status == 401
    token = (await challenged(client))["mfa_token"]
    await client.post("/auth/mfa/totp", json={"mfa_token": token})
    pending = await client.get("/auth/mfa", headers=bearer("x"))
    assert pending.status == 401
    # the enrolment was restarted: confirm its newest secret
    start = await client.post("/auth/mfa/totp", json={"mfa_token": token})
    otp = pyotp.TOTP((await start.json())["secret"])
    confirm = await client.post("/auth/mfa/totp/confirm", json={"mfa_token": token, "code": otp.now()})
    assert confirm.status == 200 and len((await confirm.json())["recovery_codes"]) == 10
    done = await client.post("/auth/token", json={"mfa_token": token})
    assert done.status == 200, await done.text()
    access = (await done.json())["access"]
    assert jose.peek_claims(access)["amr"] == ["pwd", "otp", "mfa"]
    refused = await client.delete("/auth/mfa/totp", headers=bearer(access))
    assert refused.status == 409 and (await refused.json())["code"] == "factor_required"
    again = await client.post("/auth/mfa/totp", json={"mfa_token": (await challenged(client))["mfa_token"]})
    assert again.status == 403  # an mfa_token enrols only a user who has no factor yet


async def test_a_user_who_may_remove_the_factor_logs_in_with_the_password_again(make_mfa: Any) -> None:
    client = await make_mfa()
    otp, _ = await enrol(client, (await tokens_of(client, "bob"))["access"])
    resp = await client.post("/auth/token", json={"mfa_token": (await challenged(client, "bob"))["mfa_token"], "code": otp.now()})
    access = (await resp.json())["access"]
    removed = await client.delete("/auth/mfa/totp", headers=bearer(access))
    assert removed.status == 200 and (await removed.json())["methods"] == []
    assert (await password_login(client, "bob")).status == 200


async def test_no_enumeration_of_who_has_a_second_factor_before_the_password(make_mfa: Any) -> None:
    client = await make_mfa()
    await enrol(client, (await tokens_of(client, "alice"))["access"])
    answers = []
    for user, password in (("alice", "wrong"), ("bob", "wrong"), ("nobody", "wrong")):
        resp = await password_login(client, user, password)
        answers.append((resp.status, await resp.json(), resp.headers.get("WWW-Authenticate")))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 401 and answers[0][1]["code"] == "invalid_credentials"


async def test_everyone_required_enrols_at_first_login(make_mfa: Any) -> None:
    client = await make_mfa(required="everyone")
    body = await challenged(client, "bob")
    assert body["methods"] == [] and body["enrol"] == "/auth/mfa/totp"
    start = await client.post("/auth/mfa/totp", json={"mfa_token": body["mfa_token"]})
    otp = pyotp.TOTP((await start.json())["secret"])
    confirm = await client.post("/auth/mfa/totp/confirm", json={"mfa_token": body["mfa_token"], "code": otp.now()})
    assert confirm.status == 200
    done = await client.post("/auth/token", json={"mfa_token": body["mfa_token"]})
    assert done.status == 200 and jose.peek_claims((await done.json())["access"])["amr"] == ["pwd", "otp", "mfa"]
    again = await client.post("/auth/token", json={"mfa_token": body["mfa_token"]})
    assert again.status == 401 and (await again.json())["code"] == "mfa_token_invalid"


async def test_the_database_keeps_factors_across_a_restart(make_mfa: Any) -> None:
    client = await make_mfa()
    otp, _ = await enrol(client, (await tokens_of(client))["access"])
    await client.close()
    restarted = await make_mfa()
    resp = await restarted.post("/auth/token", json={"mfa_token": (await challenged(restarted))["mfa_token"], "code": otp.now()})
    assert resp.status == 200


async def test_cookie_mode_gets_its_cookies_after_the_factor(make_gateway: Any, tmp_path: Path) -> None:
    client = await make_gateway(cookies={"enabled": True}, **factor_config(tmp_path))
    otp, _ = await enrol(client, await _bearer_login(client))
    body = await challenged(client, "bob")
    assert "Set-Cookie" not in (await password_login(client, "bob")).headers  # the password alone sets no cookie
    resp = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "code": otp.now()})
    assert resp.status == 200, await resp.text()
    assert {"gw_access", "gw_refresh", "gw_csrf"} <= set(resp.cookies) and "csrf_token" in await resp.json()
    form = await client.post("/auth/token", data={"mfa_token": body["mfa_token"], "code": otp.now()})
    assert form.status == 415  # a form could be posted by any site (login CSRF)


async def _bearer_login(client: TestClient) -> str:
    """A cookie-mode gateway still accepts the access token as a bearer: read it from the cookie of a login."""
    resp = await client.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
    return str(resp.cookies["gw_access"].value)


async def test_a_compat_dialect_answers_in_its_style_and_binds_its_mfa_token(make_gateway: Any, tmp_path: Path) -> None:
    client = await make_gateway(compat={"profiles": [{"profile": "simplejwt"}]}, **factor_config(tmp_path))
    otp, _ = await enrol(client, (await tokens_of(client, "bob"))["access"])
    resp = await client.post("/api/token", json={"username": "bob", "password": PASSWORDS["bob"]})
    body = await resp.json()
    assert resp.status == 401 and body["code"] == "second_factor_required" and "detail" in body and body["methods"]
    other = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "code": otp.now()})
    assert other.status == 401 and (await other.json())["code"] == "mfa_token_invalid"  # bound to the simplejwt login
    body = await (await client.post("/api/token", json={"username": "bob", "password": PASSWORDS["bob"]})).json()
    ok = await client.post("/api/token", json={"mfa_token": body["mfa_token"], "code": otp.now()})
    assert ok.status == 200 and set(await ok.json()) == {"access", "refresh"}
