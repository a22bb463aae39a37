"""WebAuthn as the second factor over HTTP, against the real gateway and the `webauthn` library, with a software
authenticator playing the browser (tests/support/authenticator.py; the real one is Chromium's, tests/browser):
several named authenticators enrolled after a fresh login, the second step at the login endpoint with amr hwk/swk
and mfa, enrolment with the mfa_token of a user who must have a factor, a cloned authenticator refused and audited,
an answer for another login's challenge or made for another origin or RP ID, and the last required factor kept."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.auth import jose
from tests.conftest import PASSWORDS, bearer
from tests.support.authenticator import SoftAuthenticator

KEY = "credentials-sealing-key-0123456789-abcdef"
PUBLIC_URL = "https://localhost:8443"


@pytest.fixture
def make_wa(make_gateway: Callable[..., Awaitable[TestClient]], tmp_path: Path) -> Callable[..., Awaitable[TestClient]]:
    async def make(**second_factor: Any) -> TestClient:
        return await make_gateway(
            public_url=PUBLIC_URL,
            credentials={"url": f"sqlite:///{tmp_path / 'credentials.db'}", "keys": [{"id": "k1", "secret": KEY}]},
            second_factor={"webauthn": {}, **second_factor},
        )

    return make


async def password_login(client: TestClient, user: str = "alice") -> Any:
    return await client.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})


async def register(client: TestClient, name: str, auth: dict[str, Any], **kind: Any) -> tuple[SoftAuthenticator, dict[str, Any]]:
    """``auth``: bearer headers of a fresh login, or {"mfa_token": ...}."""
    device = SoftAuthenticator(origin=PUBLIC_URL, **kind)
    headers = auth if "Authorization" in auth else {}
    fields = {} if headers else auth
    begin = await client.post("/auth/mfa/webauthn", json=fields, headers=headers)
    assert begin.status == 200, await begin.text()
    options = (await begin.json())["publicKey"]
    confirm = await client.post("/auth/mfa/webauthn/confirm", json={**fields, "name": name, "credential": device.create(options)},
                                headers=headers)
    assert confirm.status == 200, await confirm.text()
    return device, dict(await confirm.json())


async def challenged(client: TestClient) -> dict[str, Any]:
    resp = await password_login(client)
    assert resp.status == 401, await resp.text()
    body = dict(await resp.json())
    assert body["code"] == "second_factor_required"
    return body


async def test_enrol_two_authenticators_then_log_in_with_either(make_wa: Any) -> None:
    client = await make_wa()
    access = (await (await password_login(client)).json())["access"]
    laptop, first = await register(client, "laptop", bearer(access))
    assert first["methods"] == ["webauthn", "recovery"] and len(first["recovery_codes"]) == 10

    body = await challenged(client)
    assert body["methods"] == ["webauthn", "recovery"] and body["webauthn"]["rpId"] == "localhost"
    assert body["webauthn"]["userVerification"] == "required"
    resp = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "webauthn": laptop.get(body["webauthn"])})
    assert resp.status == 200, await resp.text()
    claims = jose.peek_claims((await resp.json())["access"])
    assert claims["amr"] == ["pwd", "hwk", "mfa"]

    # a second one needs a login made with the current factor: the password alone is not enough
    body = await challenged(client)
    refused = await client.post("/auth/mfa/webauthn", headers=bearer(access))
    assert refused.status == 401 and "insufficient_user_authentication" in refused.headers["WWW-Authenticate"]
    fresh = (await resp.json())["access"]
    phone, _ = await register(client, "phone", bearer(fresh), backup_eligible=True)
    listed = await (await client.get("/auth/mfa", headers=bearer(fresh))).json()
    assert [a["name"] for a in listed["authenticators"]] == ["laptop", "phone"]

    body = await challenged(client)
    assert len(body["webauthn"]["allowCredentials"]) == 2
    resp = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "webauthn": phone.get(body["webauthn"])})
    assert resp.status == 200, await resp.text()
    assert jose.peek_claims((await resp.json())["access"])["amr"] == ["pwd", "swk", "mfa"]


async def test_a_user_who_must_have_a_factor_enrols_with_the_mfa_token(make_wa: Any) -> None:
    client = await make_wa(required="everyone")
    body = await challenged(client)
    assert body["methods"] == [] and "webauthn" not in body
    _, confirmed = await register(client, "key", {"mfa_token": body["mfa_token"]})
    assert confirmed["next"].startswith("post the mfa_token alone")
    resp = await client.post("/auth/token", json={"mfa_token": body["mfa_token"]})
    assert resp.status == 200, await resp.text()
    access = (await resp.json())["access"]
    assert jose.peek_claims(access)["amr"] == ["pwd", "hwk", "mfa"]
    last = await client.delete("/auth/mfa/webauthn", json={"name": "key"}, headers=bearer(access))
    assert last.status == 409 and (await last.json())["code"] == "factor_required"


async def test_a_cloned_authenticator_is_refused_and_audited(make_wa: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.audit")
    client = await make_wa()
    access = (await (await password_login(client)).json())["access"]
    device, _ = await register(client, "laptop", bearer(access))
    body = await challenged(client)
    ok = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "webauthn": device.get(body["webauthn"], 10)})
    assert ok.status == 200
    body = await challenged(client)
    clone = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "webauthn": device.get(body["webauthn"], -3)})
    assert clone.status == 401 and (await clone.json())["code"] == "second_factor_invalid"
    events = [(r.getMessage(), getattr(r, "audit", {})) for r in caplog.records if r.name == "gateway.audit"]
    assert any(name == "second_factor.clone_suspected" and audit.get("authenticator") == "laptop" for name, audit in events)


async def test_an_assertion_for_another_logins_challenge_is_refused(make_wa: Any) -> None:
    client = await make_wa()
    access = (await (await password_login(client)).json())["access"]
    device, _ = await register(client, "laptop", bearer(access))
    first, second = await challenged(client), await challenged(client)
    crossed = await client.post("/auth/token", json={"mfa_token": second["mfa_token"], "webauthn": device.get(first["webauthn"])})
    assert crossed.status == 401 and (await crossed.json())["code"] == "second_factor_invalid"
    fresh = await client.post("/auth/mfa/webauthn/login-options", json={"mfa_token": second["mfa_token"]})
    assert fresh.status == 200, await fresh.text()
    options = (await fresh.json())["publicKey"]
    resp = await client.post("/auth/token", json={"mfa_token": second["mfa_token"], "webauthn": device.get(options)})
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("elsewhere", [{"origin": "https://localhost.evil.example"}, {"rp_id": "evil.example"},
                                       {"origin": "http://localhost:8443"}])
async def test_an_assertion_made_for_another_origin_or_rp_id_is_refused(make_wa: Any, elsewhere: dict[str, str]) -> None:
    """The user's own key, signing a phishing page's request (another origin, or another RP ID): refused, while
    the same key answering for the gateway's origin logs in."""
    client = await make_wa()
    access = (await (await password_login(client)).json())["access"]
    device, _ = await register(client, "laptop", bearer(access))
    body = await challenged(client)
    phished = dataclasses.replace(device, **elsewhere)
    refused = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "webauthn": phished.get(body["webauthn"])})
    assert refused.status == 401 and (await refused.json())["code"] == "second_factor_invalid"
    body = await challenged(client)
    device.sign_count = phished.sign_count
    resp = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "webauthn": device.get(body["webauthn"])})
    assert resp.status == 200, await resp.text()


async def test_a_passkey_login_stands_for_both_factors_where_configured(make_wa: Any) -> None:
    client = await make_wa(webauthn={"passkey_login": True})
    access = (await (await password_login(client)).json())["access"]
    device, _ = await register(client, "phone", bearer(access), backup_eligible=True)
    options = (await (await client.post("/auth/mfa/passkey/options")).json())["publicKey"]
    assert options["userVerification"] == "required" and not options.get("allowCredentials")
    resp = await client.post("/auth/token", json={"passkey": device.get(options)})
    assert resp.status == 200, await resp.text()
    claims = jose.peek_claims((await resp.json())["access"])
    assert claims["sub"] == "alice" and claims["amr"] == ["swk", "mfa"] and isinstance(claims["auth_time"], int)

    device.user_verified = False  # a passkey without user verification is a downgrade: refused
    options = (await (await client.post("/auth/mfa/passkey/options")).json())["publicKey"]
    refused = await client.post("/auth/token", json={"passkey": device.get(options)})
    assert refused.status == 401 and (await refused.json())["code"] == "second_factor_invalid"


async def test_passkey_login_is_off_unless_configured(make_wa: Any) -> None:
    client = await make_wa()
    assert (await client.post("/auth/mfa/passkey/options")).status == 404
    resp = await client.post("/auth/token", json={"passkey": {"id": "x"}})
    assert resp.status == 404


async def test_a_user_with_only_authenticators_lists_their_kinds_and_renews_recovery_codes(make_wa: Any) -> None:
    """What the manage page needs for a user without TOTP: each authenticator's kind, and new recovery codes."""
    client = await make_wa()
    access = (await (await password_login(client)).json())["access"]
    laptop, first = await register(client, "laptop", bearer(access))
    body = await challenged(client)
    resp = await client.post("/auth/token", json={"mfa_token": body["mfa_token"], "webauthn": laptop.get(body["webauthn"])})
    fresh = (await resp.json())["access"]
    await register(client, "phone", bearer(fresh), backup_eligible=True)
    listed = await (await client.get("/auth/mfa", headers=bearer(fresh))).json()
    assert [(a["name"], a["kind"]) for a in listed["authenticators"]] == [("laptop", "device_bound"), ("phone", "synced")]
    renewed = await client.post("/auth/mfa/recovery-codes", headers=bearer(fresh))
    assert renewed.status == 200, await renewed.text()
    codes = (await renewed.json())["recovery_codes"]
    assert len(codes) == 10 and not set(codes) & set(first["recovery_codes"])
