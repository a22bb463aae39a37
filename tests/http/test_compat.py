"""Compatibility profiles: the token endpoints in the dialects of SimpleJWT, djoser,
flask-jwt-extended and a custom backend, each checked against what its seed client reads.
"""
from __future__ import annotations

import secrets
import time

import jwt
import pytest

from gateway.auth.keys import hmac_kid
from gateway.config import ConfigError, load_config
from tests.conftest import PASSWORDS, ROOT, SECRET, bearer, login

SIMPLEJWT = {"profile": "simplejwt", "prefix": "/api"}
DJOSER = {"profile": "djoser", "prefix": "/api/v1"}
FLASK = {"profile": "flask-jwt-extended"}
CUSTOM = {
    "profile": "custom",
    "paths": {"login": "/api/login", "refresh": "/api/refresh-token"},
    "request": {"refresh": "refreshToken"},
    "response": {"access": "jwtToken", "refresh": "refreshToken"},
}
ALL = [SIMPLEJWT, DJOSER, FLASK, CUSTOM]


def expired_access(sub: str = "alice", **claims) -> str:
    """An access token the gateway itself would have issued, an hour past its expiry."""
    now = int(time.time()) - 3600
    payload = {"iss": "test-gw", "aud": "test-clients", "sub": sub, "iat": now - 60, "nbf": now - 60, "exp": now,
               "jti": secrets.token_hex(16), "token_type": "access", "fid": secrets.token_hex(16), **claims}
    kid = hmac_kid(SECRET.encode())
    return jwt.encode(payload, SECRET, algorithm="HS256", headers={"kid": kid, "typ": "JWT"})


async def post_json(client, path, body=None, **kw):
    resp = await client.post(path, json=body, **kw) if body is not None else await client.post(path, **kw)
    return resp, await resp.json()


# -- SimpleJWT (seeds 001 and 002) ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/token/", "/api/token"])  # seed 002 posts with, seed 001 without the slash
async def test_simplejwt_obtain_pair(make_gateway, path):
    gw = await make_gateway(compat=[SIMPLEJWT])
    resp, body = await post_json(gw, path, {"username": "alice", "password": PASSWORDS["alice"]})
    assert resp.status == 200 and set(body) == {"access", "refresh"}
    claims = jwt.decode(body["access"], SECRET, algorithms=["HS256"], audience="test-clients")
    assert claims["token_type"] == "access" and {"exp", "jti", "iat"} <= claims.keys()
    assert jwt.decode(body["refresh"], options={"verify_signature": False})["token_type"] == "refresh"
    assert resp.headers["Cache-Control"] == "no-store"


async def test_simplejwt_accepts_httpie_forms(make_gateway):
    gw = await make_gateway(compat=[SIMPLEJWT])
    resp = await gw.post("/api/token/", data={"username": "bob", "password": PASSWORDS["bob"]})
    assert resp.status == 200


async def test_simplejwt_refresh_does_not_rotate_by_default(make_gateway):
    """ROTATE_REFRESH_TOKENS defaults to False: the client keeps using its first refresh token."""
    gw = await make_gateway(compat=[SIMPLEJWT])
    _, pair = await post_json(gw, "/api/token/", {"username": "alice", "password": PASSWORDS["alice"]})
    for _ in range(3):
        resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": pair["refresh"]})
        assert resp.status == 200 and set(body) == {"access"}
        assert (await gw.get("/api/x", headers=bearer(body["access"]))).status == 200


async def test_simplejwt_refresh_rotates_when_asked(make_gateway):
    gw = await make_gateway(compat=[{**SIMPLEJWT, "rotate_refresh": True}], tokens={"refresh_grace": "0s"})
    _, pair = await post_json(gw, "/api/token/", {"username": "alice", "password": PASSWORDS["alice"]})
    resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": pair["refresh"]})
    assert resp.status == 200 and set(body) == {"access", "refresh"}
    resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": pair["refresh"]})
    assert resp.status == 401 and body == {"detail": "Token is blacklisted", "code": "token_not_valid"}


async def test_simplejwt_error_bodies(make_gateway):
    gw = await make_gateway(compat=[SIMPLEJWT])
    resp, body = await post_json(gw, "/api/token/", {"username": "alice", "password": "wrong"})
    assert resp.status == 401 and body == {"detail": "No active account found with the given credentials"}
    resp, body = await post_json(gw, "/api/token/", {"username": "alice"})
    assert resp.status == 400 and body == {"password": ["This field is required."]}
    resp, body = await post_json(gw, "/api/token/refresh/", {})
    assert resp.status == 400 and body == {"refresh": ["This field is required."]}
    pair = await login(gw, "alice", "/api/token/")
    resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": pair["access"]})
    assert resp.status == 401 and body == {"detail": "Token has wrong type", "code": "token_not_valid"}
    resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": "garbage"})
    assert resp.status == 401 and body == {"detail": "Token is invalid", "code": "token_not_valid"}
    resp, body = await post_json(gw, "/api/token/verify/", {"token": expired_access()})
    assert resp.status == 401 and body == {"detail": "Token is expired", "code": "token_not_valid"}


async def test_simplejwt_verify_and_blacklist(make_gateway):
    gw = await make_gateway(compat=[SIMPLEJWT])
    pair = await login(gw, "alice", "/api/token/")
    resp, body = await post_json(gw, "/api/token/verify/", {"token": pair["access"]})
    assert resp.status == 200 and body == {}
    resp, body = await post_json(gw, "/api/token/blacklist/", {"refresh": pair["refresh"]})
    assert resp.status == 200 and body == {}
    resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": pair["refresh"]})
    assert resp.status == 401 and body == {"detail": "Token is blacklisted", "code": "token_not_valid"}


async def test_proxied_errors_in_the_simplejwt_shape(make_gateway):
    gw = await make_gateway(compat={"errors": "simplejwt", "profiles": [SIMPLEJWT]})
    resp, body = await post_json(gw, "/api/x", {}, headers=bearer(expired_access()))
    assert resp.status == 401
    assert body == {
        "detail": "Given token not valid for any token type",
        "code": "token_not_valid",
        "messages": [{"token_class": "AccessToken", "token_type": "access", "message": "Token is expired"}],
    }
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    resp = await gw.get("/api/x")
    assert resp.status == 401 and await resp.json() == {"detail": "Authentication credentials were not provided."}
    bob = await login(gw, "bob", "/api/token/")
    resp = await gw.get("/admin/x", headers=bearer(bob["access"]))
    assert resp.status == 403 and await resp.json() == {"detail": "You do not have permission to perform this action."}


async def test_proxied_errors_keep_the_gateway_shape_by_default(make_gateway):
    gw = await make_gateway(compat=[SIMPLEJWT])
    resp = await gw.get("/api/x", headers=bearer(expired_access()))
    assert resp.status == 401 and await resp.json() == {"detail": "Token has expired", "code": "token_expired"}


# -- djoser (seed 003) -------------------------------------------------------------------------


async def test_djoser_create_refresh_verify_me(make_gateway):
    gw = await make_gateway(compat=[DJOSER])
    resp, pair = await post_json(gw, "/api/v1/auth/jwt/create/", {"username": "bob", "password": PASSWORDS["bob"]})
    assert resp.status == 200 and set(pair) == {"access", "refresh"}
    resp = await gw.get("/api/v1/auth/users/me/", headers=bearer(pair["access"]))
    assert resp.status == 200 and await resp.json() == {"email": "bob@example.com", "id": "bob", "username": "bob"}
    resp, body = await post_json(gw, "/api/v1/auth/jwt/refresh/", {"refresh": pair["refresh"]},
                                 headers=bearer(expired_access("bob")))  # seed 003 sends its stale bearer along
    assert resp.status == 200 and set(body) == {"access"}
    resp, body = await post_json(gw, "/api/v1/auth/jwt/verify/", {"token": body["access"]})
    assert resp.status == 200 and body == {}


async def test_djoser_me_errors_and_fields(make_gateway):
    gw = await make_gateway(compat=[{**DJOSER, "me_fields": {"id": "user_id|sub", "tenant": "tenant", "nope": "absent"}}])
    resp = await gw.get("/api/v1/auth/users/me/")
    assert resp.status == 401 and await resp.json() == {"detail": "Authentication credentials were not provided."}
    resp = await gw.get("/api/v1/auth/users/me/", headers=bearer(expired_access()))
    assert resp.status == 401 and (await resp.json())["messages"][0]["message"] == "Token is expired"
    pair = await login(gw, "alice", "/api/v1/auth/jwt/create/")
    resp = await gw.get("/api/v1/auth/users/me/", headers=bearer(pair["access"]))
    assert await resp.json() == {"id": "alice", "tenant": "acme"}
    assert (await gw.post("/api/v1/auth/users/me/")).status == 405


# -- flask-jwt-extended (seed 000) -------------------------------------------------------------


async def test_flask_login_by_email_and_refresh_with_the_refresh_token_as_bearer(make_gateway):
    gw = await make_gateway(compat=[FLASK])
    resp, pair = await post_json(gw, "/auth/jwt/create/", {"email": "alice@example.com", "password": PASSWORDS["alice"]})
    assert resp.status == 200 and set(pair) == {"access_token", "refresh_token"}
    for _ in range(2):  # the seed never stores a new refresh token: no rotation
        resp, body = await post_json(gw, "/auth/jwt/refresh/", headers=bearer(pair["refresh_token"]))
        assert resp.status == 200 and set(body) == {"access_token"}
    assert (await gw.get("/api/x", headers=bearer(body["access_token"]))).status == 200


async def test_flask_errors(make_gateway):
    gw = await make_gateway(compat={"errors": "flask-jwt-extended", "profiles": [FLASK]})
    resp = await gw.get("/api/admin/roles/", headers=bearer(expired_access()))
    assert (resp.status, resp.reason) == (401, "UNAUTHORIZED")  # the seed checks statusText === "UNAUTHORIZED"
    assert (await resp.json())["err"] == "Token has expired"
    resp = await gw.get("/api/x")
    assert resp.reason == "UNAUTHORIZED" and (await resp.json())["msg"] == "Missing Authorization Header"
    resp, body = await post_json(gw, "/auth/jwt/create/", {"email": "alice@example.com", "password": "nope"})
    assert (resp.status, resp.reason, body["err"]) == (401, "UNAUTHORIZED", "Bad username or password")
    resp, body = await post_json(gw, "/auth/jwt/create/", {"username": "alice", "password": PASSWORDS["alice"]})
    assert (resp.status, resp.reason) == (400, "BAD REQUEST") and body["err"] == "Missing email"
    resp, body = await post_json(gw, "/auth/jwt/refresh/")
    assert resp.status == 401 and body["err"] == "Missing Authorization Header"
    pair = await login(gw, "alice", "/auth/token")
    resp, body = await post_json(gw, "/auth/jwt/refresh/", headers=bearer(pair["access"]))
    assert resp.status == 401 and body["err"].startswith("Token has wrong type")


async def test_flask_logout_takes_either_token_as_bearer(make_gateway):
    gw = await make_gateway(compat=[{**FLASK, "paths": {"logout": "/auth/jwt/logout"}}])
    _, pair = await post_json(gw, "/auth/jwt/create/", {"email": "bob@example.com", "password": PASSWORDS["bob"]})
    resp, _ = await post_json(gw, "/auth/jwt/logout", headers=bearer(pair["refresh_token"]))
    assert resp.status == 200
    resp, body = await post_json(gw, "/auth/jwt/refresh/", headers=bearer(pair["refresh_token"]))
    assert resp.status == 401 and body["err"] == "Token has been revoked"


# -- custom (seed 004) -------------------------------------------------------------------------


async def test_custom_paths_and_fields(make_gateway):
    gw = await make_gateway(compat=[CUSTOM])
    resp, pair = await post_json(gw, "/api/login", {"username": "alice", "password": PASSWORDS["alice"]})
    assert resp.status == 200 and set(pair) == {"jwtToken", "refreshToken", "token_type", "expires_in"}
    for _ in range(2):
        resp, body = await post_json(gw, "/api/refresh-token", {"refreshToken": pair["refreshToken"]})
        assert resp.status == 200 and set(body) == {"jwtToken", "token_type", "expires_in"}
    assert (await gw.get("/api/x", headers=bearer(body["jwtToken"]))).status == 200
    resp, body = await post_json(gw, "/api/refresh-token", {"refresh": pair["refreshToken"]})
    assert resp.status == 400 and body["code"] == "bad_request" and "refreshToken" in body["detail"]


async def test_custom_profile_needs_a_path(tmp_path, make_config):
    with pytest.raises(ConfigError) as info:
        make_config(compat=[{"profile": "custom"}])
    assert any(p.startswith("compat.profiles[0]: paths:") for p in info.value.problems)


# -- several at once, one security implementation -------------------------------------------------


async def test_every_profile_at_once(make_gateway):
    gw = await make_gateway(compat=ALL)
    logins = {
        "/api/token/": {"username": "alice", "password": PASSWORDS["alice"]},
        "/api/v1/auth/jwt/create/": {"username": "alice", "password": PASSWORDS["alice"]},
        "/auth/jwt/create/": {"email": "alice@example.com", "password": PASSWORDS["alice"]},
        "/api/login": {"username": "alice", "password": PASSWORDS["alice"]},
        "/auth/token": {"username": "alice", "password": PASSWORDS["alice"]},
    }
    for path, body in logins.items():
        resp = await gw.post(path, json=body)
        assert resp.status == 200, (path, await resp.text())
    # a token minted by one dialect is the same token everywhere: refresh it in another
    pair = await login(gw, "alice", "/api/token/")
    resp, body = await post_json(gw, "/api/refresh-token", {"refreshToken": pair["refresh"]})
    assert resp.status == 200 and "jwtToken" in body


async def test_rotation_is_per_dialect_and_reuse_detection_still_holds(make_gateway):
    """The gateway's own endpoint rotates; SimpleJWT's does not; a spent token stays spent."""
    gw = await make_gateway(compat=[SIMPLEJWT], tokens={"refresh_grace": "0s"})
    pair = await login(gw, "alice", "/api/token/")
    resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": pair["refresh"]})
    assert resp.status == 200 and "refresh" not in body
    resp, rotated = await post_json(gw, "/auth/token/refresh", {"refresh": pair["refresh"]})
    assert resp.status == 200 and rotated["refresh"] != pair["refresh"]
    resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": pair["refresh"]})
    assert resp.status == 401 and body["code"] == "token_not_valid"
    resp, body = await post_json(gw, "/auth/token/refresh", {"refresh": pair["refresh"]})
    assert resp.status == 401 and body["code"] == "token_reused"  # the family is revoked now
    resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": rotated["refresh"]})
    assert resp.status == 401 and body == {"detail": "Token is blacklisted", "code": "token_not_valid"}


@pytest.mark.parametrize(
    "compat,where",
    [
        ([DJOSER | {"prefix": ""}, FLASK], "compat.profiles[1].paths.login: /auth/jwt/create is already served as compat.profiles[0].paths.login"),
        ([{**CUSTOM, "paths": {"refresh": "/auth/token/refresh/"}}], "compat.profiles[0].paths.refresh: /auth/token/refresh is already served as endpoints.refresh"),
        ([{**SIMPLEJWT, "prefix": "relative"}], "compat.profiles[0]: prefix: must be an absolute path like /auth/token"),
        ([{"profile": "nope"}], "compat.profiles[0].profile:"),
        ([{**CUSTOM, "request": {"refresh": "bad field"}}], "compat.profiles[0].request.refresh:"),
    ],
)
def test_profile_config_errors(make_config, compat, where):
    with pytest.raises(ConfigError) as info:
        make_config(compat=compat)
    assert any(where in p for p in info.value.problems), info.value.problems


async def test_default_endpoints_unchanged(gateway):
    """The gateway's own dialect is one more dialect; its answers stay as they were."""
    body = await login(gateway)
    assert set(body) == {"access", "refresh", "token_type", "expires_in"}
    resp, refreshed = await post_json(gateway, "/auth/token/refresh", {"refresh": body["refresh"]})
    assert resp.status == 200 and set(refreshed) == {"access", "refresh", "token_type", "expires_in"}


def test_frontends_example_config_is_valid():
    config = load_config(ROOT / "config" / "frontends.yaml")
    assert [p.profile for p in config.compat.profiles] == ["simplejwt", "djoser", "flask-jwt-extended", "custom"]
    assert config.compat.errors == "simplejwt" and config.cors.allow_credentials
