"""The contract every identity source passes, each against its real server.

file, Django's auth_user (PostgreSQL, MariaDB, SQLite), a Flask users table,
a PHP members table, an OpenLDAP directory and a legacy Flask login endpoint:
the same logins, the same refusals, the same claims reaching upstreams, and
changes in the source seen at the next refresh.
"""
from __future__ import annotations

import jwt

from tests.conftest import bearer
from tests.ops.sources.conftest import SourceCase

INJECTIONS = [
    "alice' OR '1'='1", "alice'--", "alice' #", "' OR 1=1 -- ", "alice\\", "alice'; DROP TABLE auth_user; --",
    "*", "alice)(uid=*", "*)(|(uid=*", "alice%", "al_ce", "alice\x00",
]


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _login(gw, user: str, password: str | None = None):
    return await gw.post("/auth/token", json={"username": user, "password": password or f"{user}-pw"})


async def test_login_issues_the_sources_claims_and_they_reach_the_upstream(source_gateway, case: SourceCase):
    gw = await source_gateway(case.entry)
    resp = await _login(gw, "alice")
    assert resp.status == 200, await resp.text()
    access = (await resp.json())["access"]
    claims = claims_of(access)
    assert claims["sub"] == "alice" and claims["email"] == "alice@example.com"
    assert case.expected_roles <= set(claims["roles"])
    echoed = await (await gw.get("/api/x", headers=bearer(access))).json()
    headers = {k.lower(): v for k, v in echoed["headers"].items()}
    assert headers["x-user-id"] == "alice" and headers["x-user-email"] == "alice@example.com"
    assert "editors" in headers["x-user-roles"].split(",")


async def test_wrong_password_and_unknown_user_get_one_answer(source_gateway, case: SourceCase):
    gw = await source_gateway(case.entry)
    answers = []
    for user, password in [("alice", "wrong-pw"), ("nobody", "nobody-pw")]:
        resp = await _login(gw, user, password)
        answers.append((resp.status, await resp.json()))
    assert answers[0] == answers[1] == (401, {"detail": "No active account found with the given credentials",
                                             "code": "invalid_credentials"})


async def test_an_inactive_user_cannot_log_in(source_gateway, case: SourceCase):
    gw = await source_gateway(case.entry)
    resp = await _login(gw, "carol")
    assert resp.status == 401 and (await resp.json())["code"] == "invalid_credentials"


async def test_a_role_change_reaches_the_next_access_token(source_gateway, live_case: SourceCase):
    case = live_case
    assert case.set_roles is not None
    gw = await source_gateway(case.entry)
    pair = await (await _login(gw, "bob")).json()
    assert set(claims_of(pair["access"])["roles"]) >= {"editors"} and "auditors" not in claims_of(pair["access"])["roles"]
    case.set_roles("bob", ["editors", "auditors"])
    try:
        resp = await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
        assert resp.status == 200, await resp.text()
        assert "auditors" in claims_of((await resp.json())["access"])["roles"]
    finally:
        case.set_roles("bob", ["editors"])


async def test_a_deactivated_user_cannot_refresh(source_gateway, live_case: SourceCase):
    case = live_case
    assert case.deactivate is not None
    gw = await source_gateway(case.entry)
    pair = await (await _login(gw, "bob")).json()
    case.deactivate("bob", True)
    try:
        resp = await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
        assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"
        assert (await _login(gw, "bob")).status == 401
    finally:
        case.deactivate("bob", False)
    assert (await _login(gw, "bob")).status == 200


async def test_injection_attempts_are_plain_wrong_logins(source_gateway, case: SourceCase):
    gw = await source_gateway(case.entry, login_throttle={"enabled": False})
    for login in INJECTIONS:
        for password in ("alice-pw", "' OR '1'='1", "*"):
            resp = await _login(gw, login, password)
            assert resp.status in (400, 401), (login, resp.status)
    assert (await _login(gw, "alice")).status == 200  # nothing was dropped or changed


async def test_the_subject_is_the_sources_own_spelling(source_gateway, case: SourceCase):
    """Case-insensitive sources (MariaDB's collation, LDAP's uid) accept ALICE as their alice; sub is theirs."""
    gw = await source_gateway(case.entry)
    for login in ("ALICE", "alice ", "alice\n"):
        resp = await _login(gw, login, "alice-pw")
        assert resp.status in (200, 401)
        if resp.status == 200:
            assert claims_of((await resp.json())["access"])["sub"] == "alice"
