"""The page to manage second factors, `<second_factor.path>/manage` (cookie mode): where a navigation goes without a
session, with a stale one (step-up for a user with a factor, sign-in without), the page's strict CSP (its one script
by a nonce of that answer, served by the gateway), `next` checked, off in bearer mode; the sign-in page sends a login
in the enrolment grace period there. Chromium runs the page itself (tests/browser/test_manage_page_browser.py)."""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pyotp
from aiohttp.test_utils import TestClient

from tests.conftest import PASSWORDS

KEY = "credentials-sealing-key-0123456789-abcdef"
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}


def settings(upstream: str, tmp_path: Path, signin: bool = True, **second_factor: Any) -> dict[str, Any]:
    return {
        "routes": [{"name": "app", "prefix": "/app", "upstream": upstream, **({"login": "signin"} if signin else {})}],
        "cookies": {"enabled": True, "secure": False},  # the test client keeps cookies over http
        "credentials": {"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]},
        "second_factor": second_factor,
    }


async def cookie_login(client: TestClient, user: str = "bob") -> dict[str, Any]:
    resp = await client.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def page(client: TestClient, query: str = "") -> Any:
    return await client.get("/auth/mfa/manage" + query, headers=NAVIGATE, allow_redirects=False)


async def test_no_session_goes_to_the_sign_in_page_or_gets_a_401_page(make_gateway: Any, upstream: str, tmp_path: Path):
    client = await make_gateway(**settings(upstream, tmp_path))
    resp = await page(client, "?next=/app/home")
    assert resp.status == 302 and resp.headers["Location"] == "/auth/signin?next=/auth/mfa/manage%3Fnext%3D/app/home"
    plain = await make_gateway(**settings(upstream, tmp_path / "b", signin=False))
    resp = await page(plain)
    assert resp.status == 401 and resp.content_type == "text/html"
    text = await resp.text()
    assert "You are not signed in" in text and "Traceback" not in text
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


async def test_the_page_has_a_strict_csp_with_its_one_script_by_nonce(make_gateway: Any, upstream: str, tmp_path: Path):
    client = await make_gateway(**settings(upstream, tmp_path))
    await cookie_login(client)
    first, second = await page(client, "?next=/app/x"), await page(client)
    assert first.status == 200 and first.headers["Cache-Control"] == "no-store"
    csp = first.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([A-Za-z0-9_-]+)';", csp)
    assert nonce is not None and nonce.group(1) != re.search(r"'nonce-([^']+)'", second.headers["Content-Security-Policy"]).group(1)  # type: ignore[union-attr]
    assert "img-src data:;" in csp and "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp
    html = await first.text()
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == [f'<script type="module" nonce="{nonce.group(1)}" src="/auth/mfa/manage.js">']
    assert 'href="/app/x"' in html and "http" not in html.replace("http-equiv", "")  # no external asset
    script = await client.get("/auth/mfa/manage.js")
    assert script.status == 200 and script.content_type == "text/javascript" and "import(d.client)" in await script.text()
    bad = await page(client, "?next=//evil.example")
    assert bad.status == 400 and "invalid_next" in await bad.text()


async def test_a_stale_session_goes_to_step_up_or_to_sign_in(make_gateway: Any, upstream: str, tmp_path: Path):
    client = await make_gateway(**settings(upstream, tmp_path, enrol_max_auth_age="4s"))
    await cookie_login(client, "bob")
    await asyncio.sleep(5.2)  # the login is older than enrol_max_auth_age (whole seconds)
    resp = await page(client)
    assert resp.status == 302 and resp.headers["Location"] == "/auth/signin?next=/auth/mfa/manage"  # no factor: sign in
    await cookie_login(client, "bob")
    csrf = {"X-CSRF-Token": client.session.cookie_jar.filter_cookies(client.make_url("/"))["gw_csrf"].value}
    start = await client.post("/auth/mfa/totp", headers=csrf)
    assert start.status == 200, await start.text()
    otp = pyotp.TOTP((await start.json())["secret"])
    confirmed = await client.post("/auth/mfa/totp/confirm", json={"code": otp.at(time.time() - 30)}, headers=csrf)
    assert confirmed.status == 200, await confirmed.text()
    resp = await page(client, "?next=/app/a")  # a password-only session of a user who now has a factor: step up
    assert resp.status == 302 and resp.headers["Location"] == "/auth/mfa/step-up?next=/auth/mfa/manage%3Fnext%3D/app/a"
    stepped = await client.post("/auth/mfa/step-up", json={"code": otp.now()}, headers=csrf)
    assert stepped.status == 200, await stepped.text()
    assert (await page(client)).status == 200  # the step-up renewed auth_time and added otp


async def test_off_in_bearer_mode(make_gateway: Any, upstream: str, tmp_path: Path):
    raw = settings(upstream, tmp_path)
    raw.pop("cookies")
    client = await make_gateway(**raw)
    assert (await page(client)).status == 404
    assert (await client.get("/auth/mfa/manage.js")).status == 404


async def test_the_sign_in_page_knows_the_manage_page_in_cookie_mode(make_gateway: Any, upstream: str, tmp_path: Path):
    client = await make_gateway(**settings(upstream, tmp_path, required="everyone", grace_period="1d"))
    html = await (await client.get("/auth/signin?next=/app/x", headers=NAVIGATE)).text()
    assert 'data-manage="/auth/mfa/manage"' in html
    assert '<div id="factor-step" hidden><label for="code">' in html  # the second step's field, shown when asked for
    body = await cookie_login(client)
    assert body["second_factor_enrolment_due"] > time.time()
