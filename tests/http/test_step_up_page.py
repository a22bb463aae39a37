"""Step-up at `<second_factor.path>/step-up`: a route's 401 insufficient_user_authentication carries `step_up_url` for
fetch/XHR and is a 302 to the step-up page for a cookie-mode navigation; the page has a strict CSP and no external asset;
a POST re-verifies a factor (throttled, each code once) and answers a fresh access token of the same session family whose
auth_time is renewed and amr updated, while a refresh of the old session still never renews auth_time."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from gateway.auth import jose
from tests.conftest import PASSWORDS, bearer, login

KEY = "credentials-sealing-key-0123456789-abcdef"
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}


def settings(upstream: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "routes": [
            {"name": "pay", "prefix": "/pay", "upstream": upstream, "require": {"amr_any": ["otp"]}},
            {"name": "fresh", "prefix": "/fresh", "upstream": upstream, "require": {"max_auth_age": "2s"}},
            {"name": "api", "prefix": "/api", "upstream": upstream},
        ],
        "credentials": {"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]},
        "second_factor": {},
        **extra,
    }


async def enrol_with(client: TestClient, access: str) -> pyotp.TOTP:
    """TOTP enrolment with a password-only access token; confirmed with the previous step's code so now()'s stays unused."""
    start = await client.post("/auth/mfa/totp", headers=bearer(access))
    otp = pyotp.TOTP((await start.json())["secret"])
    confirm = await client.post("/auth/mfa/totp/confirm", json={"code": otp.at(time.time() - 30)}, headers=bearer(access))
    assert confirm.status == 200, await confirm.text()
    return otp


async def test_fetch_gets_step_up_url_and_a_factor_renews_auth_time_in_the_same_family(
    make_gateway: Any, upstream: str, tmp_path: Path,
) -> None:
    client = await make_gateway(**settings(upstream, tmp_path))
    tokens = await login(client, "bob")
    otp = await enrol_with(client, tokens["access"])
    weak = jose.peek_claims(tokens["access"])
    resp = await client.get("/pay/x?a=1", headers=bearer(tokens["access"]))
    assert resp.status == 401
    body = await resp.json()
    assert body["code"] == "insufficient_user_authentication" and body["step_up_url"] == "/auth/mfa/step-up?next=/pay/x%3Fa%3D1"
    await asyncio.sleep(1.1)
    stepped = await client.post("/auth/mfa/step-up", json={"code": otp.now()}, headers=bearer(tokens["access"]))
    assert stepped.status == 200, await stepped.text()
    answer = await stepped.json()
    assert stepped.headers["Cache-Control"].startswith("no-store")
    claims = jose.peek_claims(answer["access_token"])
    assert claims["fid"] == weak["fid"] and claims["sub"] == "bob"  # the same session family
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["auth_time"] > weak["auth_time"]
    assert (await client.get("/pay/x", headers=bearer(answer["access_token"]))).status == 200
    # A refresh of the session keeps the login's own amr and auth_time: no bypass through refresh.
    refreshed = await client.post("/auth/token/refresh", json={"refresh": tokens["refresh"]})
    renewed = jose.peek_claims((await refreshed.json())["access"])
    assert renewed["amr"] == ["pwd"] and renewed["auth_time"] == weak["auth_time"]
    assert (await client.get("/pay/x", headers=bearer((await refreshed.json())["access"]))).status == 401


async def test_a_too_old_login_is_renewed_by_step_up_only(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path))
    tokens = await login(client, "bob")
    assert (await client.get("/fresh/x", headers=bearer(tokens["access"]))).status == 200  # before the enrolment's argon2 work
    otp = await enrol_with(client, tokens["access"])
    await asyncio.sleep(2.5)
    old = await client.get("/fresh/x", headers=bearer(tokens["access"]))
    assert old.status == 401 and (await old.json())["step_up_url"].startswith("/auth/mfa/step-up?next=/fresh/x")
    stepped = await client.post("/auth/mfa/step-up", json={"code": otp.now()}, headers=bearer(tokens["access"]))
    assert (await client.get("/fresh/x", headers=bearer((await stepped.json())["access_token"]))).status == 200


async def test_wrong_replayed_or_missing_codes_and_no_session_are_refused(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path))
    tokens = await login(client, "bob")
    otp = await enrol_with(client, tokens["access"])
    auth = bearer(tokens["access"])
    wrong = await client.post("/auth/mfa/step-up", json={"code": "000000" if otp.now() != "000000" else "111111"}, headers=auth)
    assert wrong.status == 401 and (await wrong.json())["code"] == "second_factor_invalid"
    code = otp.now()
    assert (await client.post("/auth/mfa/step-up", json={"code": code}, headers=auth)).status == 200
    replay = await client.post("/auth/mfa/step-up", json={"code": code}, headers=auth)
    assert replay.status == 401 and (await replay.json())["code"] == "second_factor_invalid"
    nothing = await client.post("/auth/mfa/step-up", json={}, headers=auth)
    assert nothing.status == 400
    anonymous = await client.post("/auth/mfa/step-up", json={"code": otp.now()})
    assert anonymous.status == 401 and "access_token" not in await anonymous.text()
    alice = (await login(client, "alice"))["access"]  # no factor: nothing to step up with
    none = await client.post("/auth/mfa/step-up", json={"code": otp.now()}, headers=bearer(alice))
    assert none.status == 409 and (await none.json())["code"] == "factor_required"


async def test_brute_force_of_step_up_is_throttled(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path))
    tokens = await login(client, "bob")
    otp = await enrol_with(client, tokens["access"])
    statuses = []
    for guess in range(7):
        code = f"{guess:06d}"
        if code == otp.now():
            continue
        resp = await client.post("/auth/mfa/step-up", json={"code": code}, headers=bearer(tokens["access"]))
        statuses.append(resp.status)
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    right = await client.post("/auth/mfa/step-up", json={"code": otp.now()}, headers=bearer(tokens["access"]))
    assert right.status == 429  # the user's throttle holds for the right code too


def cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}


async def test_cookie_mode_navigation_goes_to_the_page_and_back(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path, cookies={"enabled": True}))
    first = await client.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
    jar = {name: morsel.value for name, morsel in first.cookies.items()}
    otp = await enrol_with(client, jar["gw_access"])
    nav = await client.get("/pay/x", headers={**NAVIGATE, **cookie_header(jar)}, allow_redirects=False)
    assert nav.status == 302 and nav.headers["Location"] == "/auth/mfa/step-up?next=/pay/x"
    fetch = await client.get("/pay/x", headers={"Accept": "application/json", **cookie_header(jar)})
    assert fetch.status == 401 and (await fetch.json())["step_up_url"] == "/auth/mfa/step-up?next=/pay/x"
    page = await client.get(nav.headers["Location"])
    assert page.status == 200 and page.content_type == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    text = await page.text()
    assert 'data-next="/pay/x"' in text and "src=" not in text and "http" not in text
    no_csrf = await client.post("/auth/mfa/step-up", json={"code": otp.now()}, headers=cookie_header(jar))
    assert no_csrf.status == 403 and (await no_csrf.json())["code"] == "csrf_failed"
    stepped = await client.post("/auth/mfa/step-up", json={"code": otp.now()},
                                headers={**cookie_header(jar), "X-CSRF-Token": jar["gw_csrf"]})
    assert stepped.status == 200, await stepped.text()
    assert "access_token" not in await stepped.json() and "gw_access" in stepped.cookies
    jar.update({name: morsel.value for name, morsel in stepped.cookies.items()})
    again = await client.get("/pay/x", headers={**NAVIGATE, **cookie_header(jar)}, allow_redirects=False)
    assert again.status == 200, await again.text()


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
async def test_the_page_refuses_a_next_outside_the_gateway(make_gateway: Any, upstream: str, tmp_path: Path, target: str) -> None:
    client = await make_gateway(**settings(upstream, tmp_path, cookies={"enabled": True}))
    page = await client.get("/auth/mfa/step-up", params={"next": target})
    assert page.status == 400 and "evil.example" not in page.headers.get("Location", "")


async def test_decision_mode_answers_step_up_like_proxy_mode(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path, cookies={"enabled": True}, decision={"front": "nginx"}))
    first = await client.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
    jar = {name: morsel.value for name, morsel in first.cookies.items()}
    await enrol_with(client, jar["gw_access"])
    described = {"X-Original-Method": "GET", "X-Original-URI": "/pay/x?y=2", "Host": "app.example", **cookie_header(jar)}
    nav = await client.get("/auth/decide", headers={**described, **NAVIGATE}, allow_redirects=False)
    assert nav.status == 302 and nav.headers["Location"] == "http://app.example/auth/mfa/step-up?next=/pay/x%3Fy%3D2"
    assert nav.headers["X-Accel-Expires"] == "0"  # a refusal is never cached by the front
    fetch = await client.get("/auth/decide", headers={**described, "Accept": "application/json"})
    assert fetch.status == 401 and (await fetch.json())["step_up_url"] == "/auth/mfa/step-up?next=/pay/x%3Fy%3D2"
    assert 'error="insufficient_user_authentication"' in fetch.headers["WWW-Authenticate"]


async def test_a_recovery_code_steps_up_once(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path))
    tokens = await login(client, "bob")
    start = await client.post("/auth/mfa/totp", headers=bearer(tokens["access"]))
    otp = pyotp.TOTP((await start.json())["secret"])
    confirm = await client.post("/auth/mfa/totp/confirm", json={"code": otp.at(time.time() - 30)}, headers=bearer(tokens["access"]))
    code = (await confirm.json())["recovery_codes"][0]
    first = await client.post("/auth/mfa/step-up", json={"recovery_code": code}, headers=bearer(tokens["access"]))
    assert first.status == 200 and "otp" in (await first.json())["amr"]
    again = await client.post("/auth/mfa/step-up", json={"recovery_code": code}, headers=bearer(tokens["access"]))
    assert again.status == 401 and (await again.json())["code"] == "second_factor_invalid"
    left = await client.get("/auth/mfa", headers=bearer((await first.json())["access_token"]))
    assert (await left.json())["recovery_codes_left"] == 9
