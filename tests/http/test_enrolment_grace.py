"""The enrolment grace period (second_factor.grace_period): a user who must have a factor and has none logs in with
the password alone until the deadline counted from the first such login (remembered in the credentials database),
the answer says so in `second_factor_enrolment_due`, step-up routes still refuse the password-only token, enrolling
needs the fresh login, and after the deadline the login asks to enrol exactly as without grace. Time is moved by
writing the grace record's first moment back in the real SQLite database. Also: what `gateway mfa reset` does to it."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.auth import jose
from gateway.runtime import GATEWAY
from gateway.server.admin import create_admin_app
from tests.conftest import bearer
from tests.http.test_admin_api import ADMIN, KEY
from tests.http.test_second_factor import challenged, factor_config, password_login

HOUR = 3600
STEP_UP_ROUTE = {"name": "otp", "prefix": "/otp", "require": {"amr_any": ["otp"]}}


def config(make_config: Any, upstream: str, tmp_path: Path, **second_factor: Any) -> Any:
    raw = factor_config(tmp_path, **{"required": "everyone", "grace_period": "1h", **second_factor})
    return make_config(**raw, routes=[{**STEP_UP_ROUTE, "upstream": upstream},
                                      {"name": "api", "prefix": "/api", "upstream": upstream}], admin=ADMIN)


@pytest.fixture
async def pair(aiohttp_client: Any, make_config: Any, upstream: str, tmp_path: Path) -> Any:
    async def make(**second_factor: Any) -> tuple[TestClient, TestClient]:
        app = create_app(config(make_config, upstream, tmp_path, **second_factor))
        return await aiohttp_client(app), await aiohttp_client(create_admin_app(app[GATEWAY]))

    return make


def move_back(tmp_path: Path, user: str, seconds: int) -> None:
    """The grace started ``seconds`` earlier than recorded: time passes for the record, in the real database."""
    with sqlite3.connect(tmp_path / "credentials.db") as db:
        changed = db.execute("UPDATE gw_enrolment_grace SET started_at = started_at - ? WHERE subject = ?", (seconds, user))
        assert changed.rowcount == 1


def grace_row(tmp_path: Path, user: str) -> tuple[int, int | None] | None:
    with sqlite3.connect(tmp_path / "credentials.db") as db:
        row = db.execute("SELECT started_at, ended_at FROM gw_enrolment_grace WHERE subject = ?", (user,)).fetchone()
    return None if row is None else (int(row[0]), row[1])


def audit(caplog: pytest.LogCaptureFixture, prefix: str = "second_factor.grace") -> list[tuple[str, dict[str, Any]]]:
    return [(r.getMessage(), r.audit) for r in caplog.records if r.name == "gateway.audit" and r.getMessage().startswith(prefix)]


async def test_password_alone_until_the_deadline_of_the_first_login_then_enrolment(pair, tmp_path, caplog):
    client, _ = await pair()
    caplog.set_level(logging.INFO, "gateway.audit")
    before = int(time.time())
    first = await password_login(client, "bob")
    assert first.status == 200, await first.text()
    body = await first.json()
    due = body["second_factor_enrolment_due"]
    assert before + HOUR <= due <= int(time.time()) + HOUR
    claims = jose.peek_claims(body["access"])
    assert claims["amr"] == ["pwd"]
    assert (await client.get("/api/x", headers=bearer(body["access"]))).status == 200
    step_up = await client.get("/otp/x", headers=bearer(body["access"]))  # the grace gives no factor
    assert step_up.status == 401 and (await step_up.json())["code"] == "insufficient_user_authentication"
    move_back(tmp_path, "bob", 1800)
    second = await password_login(client, "bob")
    assert second.status == 200 and (await second.json())["second_factor_enrolment_due"] == due - 1800  # the first moment
    move_back(tmp_path, "bob", 1800)  # the deadline is now
    for _ in range(2):
        late = await challenged(client, "bob")  # exactly the answer without grace
        assert late["methods"] == [] and late["enrol"] == "/auth/mfa/totp" and "second_factor_enrolment_due" not in late
    events = audit(caplog)
    assert [(name, fields.get("reason"), fields.get("first")) for name, fields in events] == [
        ("second_factor.grace_login", None, True), ("second_factor.grace_login", None, False),
        ("second_factor.grace_ended", "expired", None),  # once, however many logins come after
    ]
    assert [(fields["subject"], fields["deadline"]) for _, fields in events] == [("bob", due), ("bob", due - 1800),
                                                                              ("bob", due - 3600)]
    assert grace_row(tmp_path, "bob")[1] is not None  # type: ignore[index]


async def test_enrolling_in_the_grace_period_with_its_fresh_login(pair, tmp_path):
    client, _ = await pair(enrol_max_auth_age="5m")
    access = (await (await password_login(client, "bob")).json())["access"]
    start = await client.post("/auth/mfa/totp", headers=bearer(access))
    assert start.status == 200, await start.text()
    otp = pyotp.TOTP((await start.json())["secret"])
    confirm = await client.post("/auth/mfa/totp/confirm", json={"code": otp.now()}, headers=bearer(access))
    assert confirm.status == 200 and len((await confirm.json())["recovery_codes"]) == 10
    asked = await challenged(client, "bob")  # from now on the factor, grace or not
    assert asked["methods"] == ["totp", "recovery"] and "enrol" not in asked
    assert grace_row(tmp_path, "bob") is not None  # kept: the first moment stays the first


async def test_an_old_grace_login_cannot_enrol(pair):
    client, _ = await pair(enrol_max_auth_age="1s")
    access = (await (await password_login(client, "bob")).json())["access"]
    await asyncio.sleep(2.2)  # the login is older than enrol_max_auth_age (whole seconds): a stolen session's case
    refused = await client.post("/auth/mfa/totp", headers=bearer(access))
    assert refused.status == 401 and (await refused.json())["code"] == "insufficient_user_authentication"


async def test_no_grace_by_default_and_none_for_users_policy_does_not_cover(pair, tmp_path, make_config, upstream, aiohttp_client):
    client, _ = await pair(required="step_up", roles=["admin"])
    bob = await password_login(client, "bob")  # not an admin: no factor needed, no grace recorded
    assert bob.status == 200 and "second_factor_enrolment_due" not in await bob.json()
    assert grace_row(tmp_path, "bob") is None
    alice = await password_login(client, "alice")  # an admin: in grace
    assert alice.status == 200 and "second_factor_enrolment_due" in await alice.json()
    plain = await aiohttp_client(create_app(make_config(**factor_config(tmp_path / "other", required="everyone"))))
    assert (await challenged(plain, "bob"))["enrol"] == "/auth/mfa/totp"  # grace_period 0: as before
    assert not (tmp_path / "other" / "credentials.db").exists() or grace_row(tmp_path / "other", "bob") is None


async def test_cookie_mode_answer_carries_the_deadline(aiohttp_client, make_config, upstream, tmp_path):
    raw = factor_config(tmp_path, required="everyone", grace_period="2h")
    client = await aiohttp_client(create_app(make_config(cookies={"enabled": True}, **raw)))
    resp = await password_login(client, "bob")
    body = await resp.json()
    assert resp.status == 200 and {"gw_access", "gw_refresh"} <= set(resp.cookies)
    assert body["second_factor_enrolment_due"] >= int(time.time()) + 2 * HOUR - 5 and "csrf_token" in body


async def test_a_reset_ends_the_grace_and_opens_none_unless_asked(pair, tmp_path, caplog):
    client, admin = await pair()
    caplog.set_level(logging.INFO, "gateway.audit")
    assert (await password_login(client, "bob")).status == 200  # bob's grace runs
    listed = await (await admin.get("/admin/api/mfa?user=bob", headers=bearer(KEY))).json()
    assert listed["methods"] == [] and listed["grace"]["open"] is True and listed["grace"]["ended_at"] is None
    assert listed["grace"]["deadline"] == listed["grace"]["started_at"] + HOUR
    reset = await admin.post("/admin/api/mfa/reset", json={"user": "bob"}, headers=bearer(KEY))
    assert reset.status == 200 and (await reset.json())["grace"] == "none"
    assert "enrol" in await challenged(client, "bob")  # a password thief gets no new window
    assert [(n, f["reason"]) for n, f in audit(caplog, "second_factor.grace_ended")] == [("second_factor.grace_ended", "reset")]
    # a user who never had a grace (here: alice, never logged in) gets none from a reset either
    await admin.post("/admin/api/mfa/reset", json={"user": "alice"}, headers=bearer(KEY))
    assert "enrol" in await challenged(client, "alice")
    assert (await (await admin.get("/admin/api/mfa?user=alice", headers=bearer(KEY))).json())["grace"]["open"] is False
    # the operator asks for a new window: the next login without a factor starts it
    again = await admin.post("/admin/api/mfa/reset", json={"user": "bob", "grace": True}, headers=bearer(KEY))
    assert (await again.json())["grace"] == "new"
    renewed = await password_login(client, "bob")
    assert renewed.status == 200 and (await renewed.json())["second_factor_enrolment_due"] >= int(time.time()) + HOUR - 5
    bad = await admin.post("/admin/api/mfa/reset", json={"user": "bob", "grace": "yes"}, headers=bearer(KEY))
    assert bad.status == 400
