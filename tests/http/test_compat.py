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
    # methods the endpoint does not take fall through to the routes: here the /api route, which wants a token
    assert (await gw.post("/api/v1/auth/users/me/")).status == 401


async def test_methods_an_endpoint_does_not_take_are_405_without_a_route(make_gateway):
    gw = await make_gateway(compat=[{**DJOSER, "prefix": "/v1"}])
    resp = await gw.patch("/v1/auth/users/me/")
    assert resp.status == 405 and resp.headers["Allow"] == "GET, HEAD"
    resp = await gw.get("/v1/auth/jwt/create/")
    assert resp.status == 405 and resp.headers["Allow"] == "POST"


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
    assert config.compat.errors == "gateway" and config.cors.allow_credentials
    styles = {r.name: r.errors for r in config.routes}
    assert styles["flask-api"] == "flask-jwt-extended" and styles["api"] == styles["djoser-api"] == "simplejwt"


# -- the error style per route ---------------------------------------------------------------------


def styled_routes(upstream: str) -> list[dict]:
    headers = {"X-User-Id": "sub"}
    return [
        {"name": "flask", "prefix": "/flask", "upstream": upstream, "errors": "flask-jwt-extended", "headers": headers},
        {"name": "drf-admin", "prefix": "/drf/admin", "upstream": upstream, "errors": "simplejwt",
         "require": {"roles_any": ["admin"]}},
        {"name": "drf", "prefix": "/drf", "upstream": upstream, "errors": "simplejwt", "headers": headers,
         "rate_limit": {"requests": 1, "per": "1m", "key": "ip"}},
        {"name": "plain", "prefix": "/plain", "upstream": upstream},
    ]


async def test_each_route_words_its_refusals_in_its_own_style(make_gateway, upstream):
    gw = await make_gateway(compat={"errors": "gateway", "profiles": ALL}, routes=styled_routes(upstream))
    expired = bearer(expired_access())
    # flask-jwt-extended: the seed 000 interceptor's refresh condition
    resp = await gw.get("/flask/roles/", headers=expired)
    assert (resp.status, resp.reason) == (401, "UNAUTHORIZED")
    assert await resp.json() == {"msg": "Token has expired", "err": "Token has expired"}
    resp = await gw.get("/flask/roles/")
    assert resp.reason == "UNAUTHORIZED" and (await resp.json())["err"] == "Missing Authorization Header"
    # simplejwt: DRF's bodies, on the same gateway
    resp = await gw.get("/drf/x", headers=expired)
    assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    bob = await login(gw, "bob", "/api/token/")
    resp = await gw.get("/drf/admin/x", headers=bearer(bob["access"]))
    assert resp.status == 403 and await resp.json() == {"detail": "You do not have permission to perform this action."}
    resp = await gw.get("/drf/x", headers=bearer(bob["access"]))
    assert resp.status == 200 and (await resp.json())["headers"]["X-User-Id"] == "bob"
    resp = await gw.get("/drf/x", headers=bearer(bob["access"]))
    assert resp.status == 429 and set(await resp.json()) == {"detail", "code"}  # other errors keep the gateway shape
    # a route without `errors`, and requests no route takes: compat.errors
    resp = await gw.get("/plain/x", headers=expired)
    assert resp.status == 401 and await resp.json() == {"detail": "Token has expired", "code": "token_expired"}
    resp = await gw.get("/nowhere")
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    # the profiles' own endpoints keep their styles
    resp, body = await post_json(gw, "/auth/jwt/refresh/")
    assert resp.reason == "UNAUTHORIZED" and body["err"] == "Missing Authorization Header"


async def test_a_route_style_overrides_compat_errors_both_ways(make_gateway, upstream):
    routes = [{"name": "flask", "prefix": "/flask", "upstream": upstream, "errors": "flask-jwt-extended",
               "rate_limit": {"requests": 1, "per": "1m", "key": "ip"}},
              {"name": "own", "prefix": "/own", "upstream": upstream, "errors": "gateway"},
              {"name": "rest", "prefix": "/", "upstream": upstream}]
    gw = await make_gateway(compat={"errors": "simplejwt", "profiles": [SIMPLEJWT]}, routes=routes)
    resp = await gw.get("/own/x")
    assert await resp.json() == {"detail": "Authentication credentials were not provided", "code": "authentication_required"}
    resp = await gw.get("/rest/x")
    assert await resp.json() == {"detail": "Authentication credentials were not provided."}
    pair = await login(gw, "alice", "/api/token/")
    assert (await gw.get("/flask/x", headers=bearer(pair["access"]))).status == 200
    resp = await gw.get("/flask/x", headers=bearer(pair["access"]))
    assert (resp.status, resp.reason) == (429, "TOO MANY REQUESTS") and set(await resp.json()) == {"msg", "err"}


def test_route_errors_names_a_known_style(make_config, upstream):
    with pytest.raises(ConfigError) as info:
        make_config(routes=[{"prefix": "/x", "upstream": upstream, "errors": "djoser"}])
    assert any(p.startswith("routes[0].errors:") for p in info.value.problems), info.value.problems
    config = make_config(routes=[{"prefix": "/x", "upstream": upstream}])
    assert config.routes[0].errors is None  # compat.errors decides


# -- the user_id claim (SimpleJWT's USER_ID_CLAIM) --------------------------------------------------


@pytest.fixture(scope="module")
def numbered_users(tmp_path_factory):
    """alice with ``user_id: 4`` (an int, as a users file or a SQL source gives it), bob with ``"7"``."""
    import yaml

    from gateway.sources.users import hash_password

    users = {"alice": {"password_hash": hash_password(PASSWORDS["alice"]), "claims": {"user_id": 4, "email": "a@x"}},
             "bob": {"password_hash": hash_password(PASSWORDS["bob"]), "claims": {"user_id": "7", "email": "b@x"}}}
    path = tmp_path_factory.mktemp("numbered") / "users.yaml"
    path.write_text(yaml.safe_dump({"users": users}))
    return path


@pytest.fixture
def numbered_gateway(aiohttp_client, upstream, numbered_users, tmp_path):
    """A gateway like ``make_gateway``'s, its users from ``numbered_users``."""
    from gateway.app import create_app
    from gateway.config import parse_config
    from tests.conftest import base_config

    async def make(**overrides):
        return await aiohttp_client(create_app(parse_config(base_config(upstream, numbered_users, **overrides), tmp_path)))
    return make


def claims_of(token: str) -> dict:
    return jwt.decode(token, SECRET, algorithms=["HS256"], audience="test-clients")


@pytest.mark.parametrize("kind,alice,bob", [("source", 4, "7"), ("string", "4", "7"), ("int", 4, 7)])
async def test_user_id_type_per_profile(numbered_gateway, kind, alice, bob):
    gw = await numbered_gateway(compat=[{**SIMPLEJWT, "user_id_type": kind}])
    for user, expected in (("alice", alice), ("bob", bob)):
        pair = await login(gw, user, "/api/token/")
        assert claims_of(pair["access"])["user_id"] == expected
        resp, body = await post_json(gw, "/api/token/refresh/", {"refresh": pair["refresh"]})
        assert resp.status == 200 and claims_of(body["access"])["user_id"] == expected  # refreshed alike
    # the gateway's own endpoints (and other profiles) keep the source's type
    assert claims_of((await login(gw, "alice"))["access"])["user_id"] == 4


async def test_user_id_claim_name_per_profile(make_gateway, numbered_gateway):
    profile = {**SIMPLEJWT, "user_id_claim": "uid", "user_id_type": "string"}
    gw = await numbered_gateway(compat=[profile, DJOSER])
    claims = claims_of((await login(gw, "alice", "/api/token/"))["access"])
    assert claims["uid"] == "4" and "user_id" not in claims
    pair = await login(gw, "alice", "/api/v1/auth/jwt/create/")  # djoser keeps the default name and type
    assert claims_of(pair["access"])["user_id"] == 4
    resp = await gw.get("/api/v1/auth/users/me/", headers=bearer(pair["access"]))
    assert await resp.json() == {"email": "a@x", "id": 4, "username": "alice"}
    # a user without user_id gets no such claim (the djoser answer falls back to the username)
    plain = await make_gateway(compat=[profile])
    assert "uid" not in claims_of((await login(plain, "alice", "/api/token/"))["access"])


@pytest.mark.parametrize("bad,where", [
    ({"user_id_type": "float"}, "compat.profiles[0].user_id_type:"),
    ({"user_id_claim": "exp"}, "compat.profiles[0]: user_id_claim: exp is set by the gateway"),
    ({"user_id_claim": "sub"}, "compat.profiles[0]: user_id_claim: sub is set by the gateway"),
    ({"user_id_claim": "bad name"}, "compat.profiles[0].user_id_claim:"),
])
def test_user_id_config_errors(make_config, bad, where):
    with pytest.raises(ConfigError) as info:
        make_config(compat=[{**SIMPLEJWT, **bad}])
    assert any(where in p for p in info.value.problems), info.value.problems
