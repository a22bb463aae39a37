"""The admin API's second-factor verbs (gateway mfa list/reset): what a user enrolled, and an operator's reset that
removes the factors and ends the user's sessions; off without second_factor; behind the admin key like every call."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.runtime import GATEWAY
from gateway.server.admin import create_admin_app
from tests.conftest import bearer
from tests.http.test_admin_api import ADMIN, KEY
from tests.http.test_second_factor import challenged, enrol, factor_config, tokens_of


async def pair(aiohttp_client: Callable[..., Awaitable[TestClient]], make_config: Callable[..., Any],
               tmp_path: Path, **extra: Any) -> tuple[TestClient, TestClient]:
    app = create_app(make_config(admin=ADMIN, **extra))
    return await aiohttp_client(app), await aiohttp_client(create_admin_app(app[GATEWAY]))


async def test_list_and_reset(aiohttp_client, make_config, tmp_path, caplog):
    main, admin = await pair(aiohttp_client, make_config, tmp_path, **factor_config(tmp_path))
    access = (await tokens_of(main))["access"]
    await enrol(main, access)
    await challenged(main)  # alice now needs her code at login
    listed = await admin.get("/admin/api/mfa?user=alice", headers=bearer(KEY))
    assert listed.status == 200 and await listed.json() == {"user": "alice", "methods": ["totp", "recovery"]}
    assert await (await admin.get("/admin/api/mfa?user=bob", headers=bearer(KEY))).json() == {"user": "bob", "methods": []}
    caplog.set_level(logging.INFO, "gateway.audit")
    reset = await admin.post("/admin/api/mfa/reset", json={"user": "alice"}, headers=bearer(KEY))
    body = await reset.json()
    assert reset.status == 200 and body["removed"] == ["totp", "recovery"] and len(body["revoked"]) == 1
    assert (await main.get("/api/x", headers=bearer(access))).status == 401  # the session that enrolled is over
    assert (await tokens_of(main))["access"]  # and a password alone logs alice in again
    names = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert "admin.mfa.reset" in names and "session.revoked" in names


async def test_refused_without_a_key_and_off_without_second_factor(aiohttp_client, make_config, tmp_path):
    main, admin = await pair(aiohttp_client, make_config, tmp_path, **factor_config(tmp_path))
    assert (await admin.post("/admin/api/mfa/reset", json={"user": "alice"})).status == 401
    assert (await admin.post("/admin/api/mfa/reset", json={"user": "alice"}, headers=bearer("gwadm_nope"))).status == 401
    on_main = await main.post("/admin/api/mfa/reset", json={"user": "alice"}, headers=bearer(KEY))
    assert (on_main.status, (await on_main.json())["code"]) == (401, "token_not_valid")  # the main listener's /admin route
    bad = await admin.post("/admin/api/mfa/reset", json={"user": "alice", "also": 1}, headers=bearer(KEY))
    assert bad.status == 400
    _, plain = await pair(aiohttp_client, make_config, tmp_path)
    off = await plain.get("/admin/api/mfa?user=alice", headers=bearer(KEY))
    assert off.status == 404 and (await off.json())["code"] == "not_configured"
