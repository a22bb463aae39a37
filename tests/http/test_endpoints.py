"""The gateway's own endpoints: login, refresh rotation, reuse, grace, verify, logout, me, health."""
from __future__ import annotations

import asyncio

import jwt
import pytest

from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, SECRET, bearer, login


async def test_login_returns_a_pair(gateway):
    body = await login(gateway)
    assert set(body) == {"access", "refresh", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    claims = jwt.decode(body["access"], SECRET, algorithms=["HS256"], audience="test-clients")
    assert claims["sub"] == "alice" and claims["token_type"] == "access" and claims["roles"] == ["admin", "user"]
    for claim in ("iss", "aud", "iat", "nbf", "exp", "jti"):
        assert claim in claims


async def test_login_accepts_a_form(gateway):
    resp = await gateway.post("/auth/token", data={"username": "bob", "password": PASSWORDS["bob"]})
    assert resp.status == 200


@pytest.mark.parametrize("username,password", [("alice", "wrong"), ("nobody", "alice-password")])
async def test_wrong_user_or_password_is_one_answer(gateway, username, password):
    resp = await gateway.post("/auth/token", json={"username": username, "password": password})
    assert resp.status == 401
    assert await resp.json() == {"detail": "No active account found with the given credentials", "code": "invalid_credentials"}
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'


async def test_unknown_user_costs_a_hash_too(gateway, monkeypatch):
    """No enumeration by timing: an unknown name runs argon2 against a dummy hash of the same cost."""
    import gateway.sources.users as users_module

    checked: list[str] = []
    real_verify = users_module._verify
    monkeypatch.setattr(users_module, "_verify", lambda stored, pw: checked.append(stored) or real_verify(stored, pw))
    await gateway.post("/auth/token", json={"username": "nobody", "password": "x"})
    await gateway.post("/auth/token", json={"username": "alice", "password": "x"})
    dummy, real = checked
    assert dummy.startswith("$argon2id$") and dummy.split("$")[3] == real.split("$")[3]  # same m, t, p


@pytest.mark.parametrize(
    "kwargs,status",
    [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": b"[1,2]", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": b'{"username":"a","username":"b","password":"x"}', "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": b"username=alice", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"json": {"username": "alice"}}, 400),
        ({"json": {"username": ["alice"], "password": "x"}}, 400),
        ({"json": {"username": "a" * 5000, "password": "x"}}, 400),
        ({"data": b"x" * 200_000, "headers": {"Content-Type": "application/json"}}, 413),
    ],
)
async def test_bad_login_input_is_a_clear_4xx(gateway, kwargs, status):
    resp = await gateway.post("/auth/token", **kwargs)
    assert resp.status == status
    body = await resp.json()
    assert set(body) == {"detail", "code"} and "Traceback" not in body["detail"]


async def test_refresh_rotates_and_spends_the_old_token(gateway):
    first = await login(gateway)
    resp = await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh"] != first["refresh"] and second["access"] != first["access"]
    resp = await gateway.get("/api/x", headers=bearer(second["access"]))
    assert resp.status == 200


async def test_repeat_within_grace_gets_the_same_successor(gateway):
    first = await login(gateway)
    answers = await asyncio.gather(
        *[gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]}) for _ in range(10)]
    )
    bodies = [await r.json() for r in answers]
    assert all(r.status == 200 for r in answers)
    assert len({(b["access"], b["refresh"]) for b in bodies}) == 1


async def test_reuse_after_grace_revokes_the_whole_family(make_gateway):
    gateway = await make_gateway(tokens={"refresh_grace": "0.2s"})
    first = await login(gateway)
    second = await (await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})).json()
    await asyncio.sleep(0.3)
    resp = await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})
    assert resp.status == 401 and (await resp.json())["code"] == "token_reused"
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    # every descendant is dead: the successor refresh and the successor access token
    resp = await gateway.post("/auth/token/refresh", json={"refresh": second["refresh"]})
    assert (await resp.json())["code"] == "token_revoked"
    resp = await gateway.get("/api/x", headers=bearer(second["access"]))
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


async def test_other_logins_survive_a_reuse(make_gateway):
    gateway = await make_gateway(tokens={"refresh_grace": "0s"})
    victim, other = await login(gateway), await login(gateway)
    await gateway.post("/auth/token/refresh", json={"refresh": victim["refresh"]})
    await gateway.post("/auth/token/refresh", json={"refresh": victim["refresh"]})
    resp = await gateway.get("/api/x", headers=bearer(other["access"]))
    assert resp.status == 200


async def test_refresh_without_rotation_keeps_the_refresh_token(make_gateway):
    gateway = await make_gateway(tokens={"rotate_refresh": False})
    first = await login(gateway)
    for _ in range(3):
        resp = await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})
        assert resp.status == 200
        assert "refresh" not in await resp.json()


async def test_access_token_expires(make_gateway):
    gateway = await make_gateway(tokens={"access_lifetime": "1s"})
    body = await login(gateway)
    await asyncio.sleep(2.1)
    resp = await gateway.get("/api/x", headers=bearer(body["access"]))
    assert resp.status == 401
    assert await resp.json() == {"detail": "Token has expired", "code": "token_expired"}
    assert 'error_description="Token has expired"' in resp.headers["WWW-Authenticate"]


async def test_refresh_token_is_never_a_bearer(gateway):
    body = await login(gateway)
    resp = await gateway.get("/api/x", headers=bearer(body["refresh"]))
    assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"


async def test_access_token_cannot_refresh(gateway):
    body = await login(gateway)
    resp = await gateway.post("/auth/token/refresh", json={"refresh": body["access"]})
    assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"


async def test_verify(gateway):
    body = await login(gateway)
    for token in (body["access"], body["refresh"]):
        resp = await gateway.post("/auth/token/verify", json={"token": token})
        assert resp.status == 200 and await resp.json() == {}
    resp = await gateway.post("/auth/token/verify", json={"token": body["access"] + "x"})
    assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"


async def test_logout_revokes_family_and_denies_the_access_token(gateway):
    body = await login(gateway)
    resp = await gateway.post("/auth/logout", json={"refresh": body["refresh"]}, headers=bearer(body["access"]))
    assert resp.status == 200
    resp = await gateway.get("/api/x", headers=bearer(body["access"]))
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"
    resp = await gateway.post("/auth/token/refresh", json={"refresh": body["refresh"]})
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


async def test_logout_with_the_access_token_alone_ends_the_session(gateway):
    body = await login(gateway)
    assert (await gateway.post("/auth/logout", headers=bearer(body["access"]))).status == 200
    resp = await gateway.post("/auth/token/refresh", json={"refresh": body["refresh"]})
    assert (await resp.json())["code"] == "token_revoked"


async def test_logout_without_a_token(gateway):
    resp = await gateway.post("/auth/logout")
    assert resp.status == 401 and (await resp.json())["code"] == "authentication_required"


async def test_me_returns_the_verified_claims(gateway):
    body = await login(gateway, "bob")
    resp = await gateway.get("/auth/me", headers=bearer(body["access"]))
    claims = await resp.json()
    assert claims["sub"] == "bob" and claims["email"] == "bob@example.com"
    assert (await gateway.get("/auth/me")).status == 401


async def test_wrong_method_on_an_endpoint(gateway):
    resp = await gateway.get("/auth/token")
    assert resp.status == 405 and resp.headers["Allow"] == "POST"


async def test_trailing_slash_variant(gateway):
    resp = await gateway.post("/auth/token/", json={"username": "bob", "password": PASSWORDS["bob"]})
    assert resp.status == 200


async def test_health_and_readiness(gateway):
    assert (await gateway.get("/healthz")).status == 200
    assert (await gateway.get("/readyz")).status == 200


async def test_readyz_is_503_when_redis_is_down(make_gateway, redis_server, redis_url):
    gateway = await make_gateway(store=RedisStore(redis_url, timeout=0.5))
    assert (await gateway.get("/readyz")).status == 200
    redis_server.stop()
    try:
        resp = await gateway.get("/readyz")
        assert resp.status == 503 and (await resp.json())["code"] == "store_unavailable"
        resp = await gateway.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert resp.status == 503 and (await resp.json())["code"] == "store_unavailable"
    finally:
        redis_server.start()


async def test_a_remembered_token_is_still_refused_once_revoked(gateway):
    """The verified-token cache never answers for revocation: that is asked of the store every time."""
    body = await login(gateway)
    assert (await gateway.get("/api/x", headers=bearer(body["access"]))).status == 200  # now cached
    await gateway.post("/auth/logout", headers=bearer(body["access"]))
    resp = await gateway.get("/api/x", headers=bearer(body["access"]))
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"
