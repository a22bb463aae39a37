"""What a djoser frontend calls besides the JWT endpoints, through the shipped ``config/frontends.yaml``.

Sign-up, activation and password reset pass to the Django app without a token; the user's own
account (PATCH/PUT/DELETE ``users/me/``, ``set_password``) needs one and reaches the app with the
identity headers; ``GET users/me/`` is answered by the gateway's djoser profile. The upstream is
the example upstream (it echoes what reached it), on a real socket.
"""
from __future__ import annotations

import pytest

from gateway.app import create_app
from gateway.config import load_config
from tests.conftest import ROOT, bearer

V1 = "/api/v1/auth"
ALICE = {"username": "alice", "password": "alice-password"}  # config/users.yaml


@pytest.fixture
async def gw(aiohttp_client, upstream, monkeypatch):
    """The exact config/frontends.yaml, its upstream placeholder pointed at the echo upstream."""
    monkeypatch.setenv("UPSTREAM", upstream)
    return await aiohttp_client(create_app(load_config(ROOT / "config" / "frontends.yaml")))


async def access_token(gw) -> str:
    resp = await gw.post(f"{V1}/jwt/create/", json=ALICE)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["access"]


@pytest.mark.parametrize("path", [
    "users/", "users/activation/", "users/resend_activation/", "users/reset_password/",
    "users/reset_password_confirm/",
])
async def test_public_djoser_actions_reach_the_app_without_a_token(gw, path):
    resp = await gw.post(f"{V1}/{path}", json={"email": "new@example.com", "password": "x" * 12},
                         headers={"X-User-Id": "root"})
    assert resp.status == 200, await resp.text()  # the app answered (djoser: 201/204/400), not the gateway's 401
    seen = await resp.json()
    assert seen["upstream"] == "example" and seen["method"] == "POST" and seen["path"] == f"{V1}/{path}"
    assert not any(h.lower().startswith("x-user-") for h in seen["headers"])  # anonymous, spoofing stripped


@pytest.mark.parametrize("method,path", [
    ("PATCH", "users/me/"), ("PUT", "users/me/"), ("DELETE", "users/me/"), ("POST", "users/me/"),
    ("POST", "users/set_password/"), ("POST", "users/set_username/"), ("GET", "users/"), ("GET", "users/1/"),
])
async def test_the_users_own_account_needs_a_token(gw, method, path):
    resp = await gw.request(method, f"{V1}/{path}", json={"first_name": "A"})
    assert resp.status == 401
    assert await resp.json() == {"detail": "Authentication credentials were not provided."}  # DRF's words
    token = await access_token(gw)
    resp = await gw.request(method, f"{V1}/{path}", json={"first_name": "A"},
                            headers={**bearer(token), "X-User-Id": "root"})
    assert resp.status == 200, await resp.text()
    seen = await resp.json()
    assert (seen["method"], seen["path"]) == (method, f"{V1}/{path}")
    assert seen["headers"]["X-User-Id"] == "alice" and seen["headers"]["X-User-Email"] == "alice@example.com"


async def test_get_users_me_is_answered_by_the_gateway(gw):
    token = await access_token(gw)
    for path in (f"{V1}/users/me/", f"{V1}/users/me"):
        resp = await gw.get(path, headers=bearer(token))
        assert resp.status == 200 and await resp.json() == {"email": "alice@example.com", "id": 1, "username": "alice"}
    resp = await gw.get(f"{V1}/users/me/")
    assert resp.status == 401 and await resp.json() == {"detail": "Authentication credentials were not provided."}


async def test_a_bad_token_on_the_djoser_api_is_drf_shaped(gw):
    resp = await gw.patch(f"{V1}/users/me/", headers=bearer("not.a.token"))
    assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"


async def test_preflights_follow_the_same_split(gw):
    """A frontend on another origin may PATCH users/me/ (a route takes it) as well as GET it (the endpoint)."""
    origin = "http://localhost:3000"  # listed in the file's cors.allow_origins
    for method in ("GET", "PATCH", "DELETE"):
        resp = await gw.options(f"{V1}/users/me/", headers={
            "Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == origin, method
