"""Step-up with a WebAuthn assertion, over HTTP against the real gateway and the `webauthn` library (a software
authenticator plays the browser: tests/support/authenticator.py; Chromium's is in tests/browser): the page offers
the user's authenticators, `<path>/step-up/options` gives a challenge bound to this user and this session, the
answer earns a fresh access token with hwk/swk in amr; a replayed answer, a login's challenge, another session's
or another user's challenge, an unverified user, a cookie POST without CSRF are refused."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.auth import jose
from tests.conftest import PASSWORDS, bearer, login
from tests.support.authenticator import SoftAuthenticator, b64url

KEY = "credentials-sealing-key-0123456789-abcdef"
PUBLIC_URL = "https://localhost:8443"
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}


def settings(upstream: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "public_url": PUBLIC_URL,
        "routes": [{"name": "keys", "prefix": "/keys", "upstream": upstream, "require": {"amr_any": ["hwk"]}},
                   {"name": "api", "prefix": "/api", "upstream": upstream}],
        "credentials": {"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]},
        "second_factor": {"webauthn": {}},
        **extra,
    }


async def enrol(client: TestClient, access: str, name: str = "laptop", **kind: Any) -> SoftAuthenticator:
    device = SoftAuthenticator(origin=PUBLIC_URL, **kind)
    begin = await client.post("/auth/mfa/webauthn", headers=bearer(access))
    assert begin.status == 200, await begin.text()
    confirm = await client.post("/auth/mfa/webauthn/confirm", headers=bearer(access),
                                json={"name": name, "credential": device.create((await begin.json())["publicKey"])})
    assert confirm.status == 200, await confirm.text()
    return device


async def options(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    resp = await client.post("/auth/mfa/step-up/options", headers=headers)
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["publicKey"])


async def test_an_assertion_steps_up_with_hwk_and_the_page_offers_the_authenticators(
    make_gateway: Any, upstream: str, tmp_path: Path,
) -> None:
    client = await make_gateway(**settings(upstream, tmp_path))
    tokens = await login(client, "bob")  # password only: then bob enrols a key in this session
    laptop = await enrol(client, tokens["access"])
    auth = bearer(tokens["access"])
    refused = await client.get("/keys/x", headers={"Accept": "application/json", **auth})
    assert refused.status == 401 and (await refused.json())["step_up_url"] == "/auth/mfa/step-up?next=/keys/x"

    asked = await options(client, auth)
    assert asked["rpId"] == "localhost" and asked["userVerification"] == "required"
    assert [c["id"] for c in asked["allowCredentials"]] == [b64url(laptop.credential_id)]
    answer = laptop.get(asked)
    stepped = await client.post("/auth/mfa/step-up", json={"webauthn": answer}, headers=auth)
    assert stepped.status == 200, await stepped.text()
    body = await stepped.json()
    claims = jose.peek_claims(body["access_token"])
    assert claims["amr"] == body["amr"] == ["pwd", "hwk", "mfa"]
    assert claims["fid"] == jose.peek_claims(tokens["access"])["fid"]  # the same session family
    assert (await client.get("/keys/x", headers=bearer(body["access_token"]))).status == 200

    replay = await client.post("/auth/mfa/step-up", json={"webauthn": answer}, headers=auth)  # its challenge is spent
    assert replay.status == 401 and (await replay.json())["code"] == "second_factor_invalid"

    page = await client.get("/auth/mfa/step-up?next=/keys/x", headers=auth)
    text = await page.text()
    assert 'id="step-up-webauthn"' in text and "(laptop)" in text and 'id="step-up-form"' not in text  # no TOTP: no code field
    assert "http" not in text and "src=" not in text


async def test_a_synced_passkey_earns_swk(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path))
    tokens = await login(client, "bob")
    phone = await enrol(client, tokens["access"], "phone", backup_eligible=True)
    auth = bearer(tokens["access"])
    stepped = await client.post("/auth/mfa/step-up", json={"webauthn": phone.get(await options(client, auth))}, headers=auth)
    assert stepped.status == 200 and (await stepped.json())["amr"] == ["pwd", "swk", "mfa"]
    assert (await client.get("/keys/x", headers=bearer((await stepped.json())["access_token"]))).status == 401  # hwk only


async def test_challenges_of_a_login_another_session_or_another_user_are_refused(
    make_gateway: Any, upstream: str, tmp_path: Path,
) -> None:
    client = await make_gateway(**settings(upstream, tmp_path))
    first = await login(client, "bob")
    laptop = await enrol(client, first["access"])
    bob_auth = bearer(first["access"])
    invalid = {"status": 401, "code": "second_factor_invalid"}

    async def step_up(answer: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        resp = await client.post("/auth/mfa/step-up", json={"webauthn": answer}, headers=headers)
        return {"status": resp.status, "code": (await resp.json()).get("code")}

    # a login's challenge (bound to its mfa_token) does not step up a session
    pending = await client.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
    assert pending.status == 401
    assert await step_up(laptop.get((await pending.json())["webauthn"]), bob_auth) == invalid
    # the challenge of another of bob's sessions (a second login, made with the key) does not step up this one
    second = await client.post("/auth/token", json={"mfa_token": (await pending.json())["mfa_token"],
                                                    "webauthn": laptop.get(await login_options(client, pending))})
    assert second.status == 200, await second.text()
    other_session = bearer((await second.json())["access"])
    assert await step_up(laptop.get(await options(client, other_session)), bob_auth) == invalid
    # another user: alice has no key yet (409), then her session with bob's challenge, answered by bob's key or hers
    alice_access = (await login(client, "alice"))["access"]
    alice = bearer(alice_access)
    no_key = await client.post("/auth/mfa/step-up/options", headers=alice)
    assert no_key.status == 409 and (await no_key.json())["code"] == "factor_required"
    alice_key = await enrol(client, alice_access, "alice-key")
    assert await step_up(laptop.get(await options(client, bob_auth)), alice) == invalid
    assert await step_up(alice_key.get(await options(client, bob_auth)), alice) == invalid
    assert (await step_up(alice_key.get(await options(client, alice)), alice))["status"] == 200
    # an authenticator that did not verify its user (user_verification: required)
    laptop.user_verified = False
    assert await step_up(laptop.get(await options(client, bob_auth)), bob_auth) == invalid
    laptop.user_verified = True
    assert (await step_up(laptop.get(await options(client, bob_auth)), bob_auth))["status"] == 200
    nobody = await client.post("/auth/mfa/step-up/options")
    assert nobody.status == 401


async def login_options(client: TestClient, pending: Any) -> dict[str, Any]:
    resp = await client.post("/auth/mfa/webauthn/login-options", json={"mfa_token": (await pending.json())["mfa_token"]})
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["publicKey"])


async def test_wrong_assertions_count_in_the_factor_throttle(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path, second_factor={"webauthn": {}, "throttle": {"per_user": 2}}))
    tokens = await login(client, "bob")
    laptop = await enrol(client, tokens["access"])
    auth = bearer(tokens["access"])
    stranger = SoftAuthenticator(origin=PUBLIC_URL, credential_id=laptop.credential_id)  # bob's id, another key
    for _ in range(2):
        wrong = await client.post("/auth/mfa/step-up", json={"webauthn": stranger.get(await options(client, auth))}, headers=auth)
        assert wrong.status == 401
    blocked = await client.post("/auth/mfa/step-up", json={"webauthn": laptop.get(await options(client, auth))}, headers=auth)
    assert blocked.status == 429 and "Retry-After" in blocked.headers


async def test_cookie_mode_page_options_and_answer_need_the_csrf_header(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    client = await make_gateway(**settings(upstream, tmp_path, cookies={"enabled": True}))
    first = await client.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
    jar = {name: morsel.value for name, morsel in first.cookies.items()}
    laptop = await enrol(client, jar["gw_access"])
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    nav = await client.get("/keys/x", headers={**NAVIGATE, **cookie}, allow_redirects=False)
    assert nav.status == 302 and nav.headers["Location"] == "/auth/mfa/step-up?next=/keys/x"
    no_csrf = await client.post("/auth/mfa/step-up/options", headers=cookie)
    assert no_csrf.status == 403 and (await no_csrf.json())["code"] == "csrf_failed"
    with_csrf = {**cookie, "X-CSRF-Token": jar["gw_csrf"]}
    answer = laptop.get(await options(client, with_csrf))
    refused = await client.post("/auth/mfa/step-up", json={"webauthn": answer}, headers=cookie)
    assert refused.status == 403
    stepped = await client.post("/auth/mfa/step-up", json={"webauthn": answer}, headers=with_csrf)
    assert stepped.status == 200, await stepped.text()
    assert "access_token" not in await stepped.json() and "gw_access" in stepped.cookies
    jar.update({name: morsel.value for name, morsel in stepped.cookies.items()})
    again = await client.get("/keys/x", headers={**NAVIGATE, "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())},
                             allow_redirects=False)
    assert again.status == 200, await again.text()


async def test_user_verification_as_configured(make_gateway: Any, upstream: str, tmp_path: Path) -> None:
    """`preferred`: the step-up asks for it and takes an answer without it (`required` refuses it: above)."""
    client = await make_gateway(**settings(upstream, tmp_path, second_factor={"webauthn": {"user_verification": "preferred"}}))
    tokens = await login(client, "bob")
    laptop = await enrol(client, tokens["access"])
    auth = bearer(tokens["access"])
    asked = await options(client, auth)
    assert asked["userVerification"] == "preferred"
    laptop.user_verified = False
    stepped = await client.post("/auth/mfa/step-up", json={"webauthn": laptop.get(asked)}, headers=auth)
    assert stepped.status == 200 and (await stepped.json())["amr"] == ["pwd", "hwk", "mfa"]
