"""Service keys on a real gateway (SQLite credentials database): created, listed and revoked through the admin API,
accepted in the header and as a bearer on opted-in routes only, never passed to the upstream; expired, revoked,
malformed and unknown keys 401 (never 500); a revocation on one instance refused by another on the same database
within the cache bound; route rate limits counted per key; audit events without the key."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.auth.admin_keys import generate_admin_key
from gateway.auth.service_keys import digest, generate_key
from gateway.observe.audit import LOGGER
from gateway.runtime import GATEWAY
from gateway.server.admin import create_admin_app
from tests.conftest import bearer

ADMIN_KEY, ADMIN_DIGEST = generate_admin_key()
SEALING = "credentials-sealing-key-0123456789-abcdef"


class Gw:
    def __init__(self, main: TestClient, admin: TestClient) -> None:
        self.main, self.admin = main, admin

    async def create(self, name: str, expected: int = 201, **body: Any) -> dict[str, Any]:
        resp = await self.admin.post("/admin/api/service-keys", json={"name": name, "owner": "team-a", **body},
                                     headers=bearer(ADMIN_KEY))
        answer: dict[str, Any] = await resp.json()
        assert resp.status == expected, answer
        return answer

    async def revoke(self, name: str) -> Any:
        resp = await self.admin.post("/admin/api/service-keys/revoke", json={"name": name}, headers=bearer(ADMIN_KEY))
        return resp.status, await resp.json()


def key_config(tmp_path: Path, upstream: str, cache: str = "10s", **route: Any) -> dict[str, Any]:
    headers = {"X-User-Id": "sub", "X-User-Roles": "roles"}
    return {
        "credentials": {"url": f"sqlite:///{tmp_path / 'credentials.db'}", "keys": [{"id": "k1", "secret": SEALING}]},
        "service_keys": {"cache": cache},
        "admin": {"host": "127.0.0.1", "port": 0, "keys": [{"name": "ops-alice", "sha256": ADMIN_DIGEST}]},
        "routes": [
            {"name": "machines", "prefix": "/machines", "upstream": upstream, "service_keys": True, "headers": headers,
             **route},
            {"name": "loose", "prefix": "/loose", "upstream": upstream, "service_keys": True, "auth": "optional",
             "headers": headers, "forward_authorization": True},
            {"name": "people", "prefix": "/people", "upstream": upstream, "headers": headers},
        ],
    }


@pytest.fixture
async def gateways(aiohttp_client: Callable[..., Awaitable[TestClient]], make_config: Callable[..., Any],
                   upstream: str, tmp_path: Path) -> Callable[..., Awaitable[Gw]]:
    async def make(**options: Any) -> Gw:
        app = create_app(make_config(**key_config(tmp_path, upstream, **options)))
        main = await aiohttp_client(app)
        return Gw(main, await aiohttp_client(create_admin_app(app[GATEWAY])))

    return make


async def test_header_and_bearer_forms_with_identity_headers_and_no_key_upstream(gateways):
    gw = await gateways()
    created = await gw.create("billing-sync", claims={"roles": ["reader", "sync"]}, expires_in="90d")
    key = created["key"]
    assert key.startswith("gwsk_") and len(key) == 48 and created["prefix"] == key[:12]
    assert 89 * 86400 < created["expires"] - time.time() <= 90 * 86400
    for headers in ({"X-Api-Key": key}, {"Authorization": f"Bearer {key}"}):
        resp = await gw.main.get("/machines/x", headers=headers)
        assert resp.status == 200, await resp.text()
        seen = {k.lower(): v for k, v in (await resp.json())["headers"].items()}
        assert seen["x-user-id"] == "service:billing-sync" and seen["x-user-roles"] == "reader,sync"
        assert "x-api-key" not in seen and "authorization" not in seen
        assert key not in json.dumps(seen)
    # a route that forwards Authorization still never forwards a service key
    resp = await gw.main.get("/loose/x", headers={"Authorization": f"Bearer {key}"})
    seen = {k.lower(): v for k, v in (await resp.json())["headers"].items()}
    assert resp.status == 200 and "authorization" not in seen and seen["x-user-id"] == "service:billing-sync"


async def test_listing_shows_prefix_never_key_and_last_use_is_written(gateways):
    gw = await gateways()
    key = (await gw.create("lister"))["key"]
    assert (await gw.main.get("/machines/x", headers={"X-Api-Key": key})).status == 200
    await gw.main.app[GATEWAY].runtime.service_keys.drain()
    resp = await gw.admin.get("/admin/api/service-keys", headers=bearer(ADMIN_KEY))
    text = await resp.text()
    assert resp.status == 200 and key not in text and digest(key) not in text
    (entry,) = (await resp.json())["service_keys"]
    assert entry["name"] == "lister" and entry["prefix"] == key[:12] and entry["expires"] is None
    assert entry["last_used"] is not None and abs(entry["last_used"] - time.time()) < 30


async def test_a_route_without_opt_in_refuses_keys(gateways):
    gw = await gateways()
    key = (await gw.create("nosy"))["key"]
    for headers in ({"X-Api-Key": key}, {"Authorization": f"Bearer {key}"}):
        resp = await gw.main.get("/people/x", headers=headers)
        assert resp.status == 401 and (await resp.json())["code"] == "service_key_not_accepted"


@pytest.mark.parametrize("bad", ["", "x", "gwsk_", "gwsk_" + "A" * 42, "gwsk_" + "A" * 44, "gwsk_" + "!" * 43,
                                 "gwsk_" + "é" * 43, "Bearer", "gwsk_" + "A" * 5000])
async def test_malformed_keys_are_401_never_500(gateways, bad):
    gw = await gateways()
    resp = await gw.main.get("/machines/x", headers={"X-Api-Key": bad})
    assert resp.status in (400, 401), await resp.text()
    if resp.status == 401:
        assert (await resp.json())["code"] == "service_key_invalid"


async def test_unknown_wellformed_and_two_headers_are_401(gateways):
    gw = await gateways()
    key = (await gw.create("twice"))["key"]
    resp = await gw.main.get("/machines/x", headers={"X-Api-Key": generate_key()})
    assert resp.status == 401 and (await resp.json())["code"] == "service_key_invalid"
    resp = await gw.main.get("/machines/x", headers=[("X-Api-Key", key), ("X-Api-Key", key)])
    assert resp.status == 401
    resp = await gw.main.get("/machines/x", headers={"X-Api-Key": key, "Authorization": "Bearer something"})
    assert resp.status == 400


async def test_expired_key_is_401(gateways):
    gw = await gateways()
    key = (await gw.create("short", expires_in="1s"))["key"]
    assert (await gw.main.get("/machines/x", headers={"X-Api-Key": key})).status == 200
    await asyncio.sleep(1.2)
    resp = await gw.main.get("/machines/x", headers={"X-Api-Key": key})
    assert resp.status == 401 and (await resp.json())["code"] == "service_key_expired"


async def test_revoked_key_is_401_at_once_on_its_instance(gateways, caplog):
    gw = await gateways()
    key = (await gw.create("doomed"))["key"]
    assert (await gw.main.get("/machines/x", headers={"X-Api-Key": key})).status == 200
    with caplog.at_level(logging.INFO, logger=LOGGER):
        logging.getLogger(LOGGER).addHandler(caplog.handler)
        try:
            status, answer = await gw.revoke("doomed")
            assert status == 200 and answer["revoked"] == "doomed"
            resp = await gw.main.get("/machines/x", headers={"X-Api-Key": key})
            assert resp.status == 401 and (await resp.json())["code"] == "service_key_revoked"
        finally:
            logging.getLogger(LOGGER).removeHandler(caplog.handler)
    events = {r.getMessage(): getattr(r, "audit", {}) for r in caplog.records if r.name == LOGGER}
    assert events["service_key.revoked"]["name"] == "doomed" and events["service_key.revoked"]["admin_key"] == "ops-alice"
    assert events["service_key.refused"]["reason"] == "revoked"
    assert key not in caplog.text
    assert (await gw.revoke("doomed"))[0] == 404  # already revoked
    assert (await gw.create("doomed", expected=409))["code"] == "service_key_exists"


async def test_revocation_reaches_another_instance_within_the_cache_bound(aiohttp_client, make_config, upstream, tmp_path):
    """Two gateways on one database (SQLite file): revoked on the first, refused by the second once its cache ends."""
    raw = key_config(tmp_path, upstream, cache="1s")
    first_app, second_app = create_app(make_config(**raw)), create_app(make_config(**raw))
    first = Gw(await aiohttp_client(first_app), await aiohttp_client(create_admin_app(first_app[GATEWAY])))
    second = await aiohttp_client(second_app)
    key = (await first.create("shared"))["key"]
    assert (await second.get("/machines/x", headers={"X-Api-Key": key})).status == 200  # cached on the second now
    assert (await first.revoke("shared"))[0] == 200
    deadline = time.monotonic() + 1.0 + 5.0  # the bound (1 s), and a generous margin for a loaded machine
    while True:
        resp = await second.get("/machines/x", headers={"X-Api-Key": key})
        if resp.status == 401:
            assert (await resp.json())["code"] == "service_key_revoked"
            break
        assert time.monotonic() < deadline, "the second instance still accepts a revoked key past the bound"
        await asyncio.sleep(0.1)


async def test_rate_limit_counts_per_key(gateways):
    gw = await gateways(rate_limit={"requests": 2, "per": "60s", "key": "sub"})
    one, two = (await gw.create("one"))["key"], (await gw.create("two"))["key"]
    assert [(await gw.main.get("/machines/x", headers={"X-Api-Key": one})).status for _ in range(3)] == [200, 200, 429]
    assert (await gw.main.get("/machines/x", headers={"X-Api-Key": two})).status == 200


async def test_admin_api_refuses_bad_input_and_needs_a_key(gateways):
    gw = await gateways()
    assert (await gw.admin.post("/admin/api/service-keys", json={"name": "x", "owner": "o"})).status == 401
    assert (await gw.main.post("/admin/api/service-keys", json={"name": "x", "owner": "o"},
                               headers=bearer(ADMIN_KEY))).status in (401, 404)  # not on the main listener
    for body in ({"name": "bad name", "owner": "o"}, {"name": "x", "owner": "o", "claims": {"sub": "root"}},
                 {"name": "x", "owner": "o", "claims": {"exp": 1}}, {"name": "x", "owner": "o", "claims": []},
                 {"name": "x", "owner": "o", "expires_in": "soon"}, {"name": "x", "owner": "o", "extra": 1},
                 {"name": "x"}, {"name": "x", "owner": "o", "claims": {"roles": [{"a": 1}]}}):
        resp = await gw.admin.post("/admin/api/service-keys", json=body, headers=bearer(ADMIN_KEY))
        assert resp.status == 400, body
    assert (await gw.revoke("never-made"))[0] == 404


async def test_without_the_section_the_api_says_so(aiohttp_client, make_config):
    app = create_app(make_config(admin={"host": "127.0.0.1", "port": 0, "keys": [{"name": "a", "sha256": ADMIN_DIGEST}]}))
    admin = await aiohttp_client(create_admin_app(app[GATEWAY]))
    resp = await admin.get("/admin/api/service-keys", headers=bearer(ADMIN_KEY))
    assert resp.status == 404 and (await resp.json())["code"] == "service_key_not_found"


async def test_decision_mode_accepts_keys_and_never_lets_a_front_cache_them(aiohttp_client, make_config, upstream,
                                                                             tmp_path, redis_url):
    """With Redis and the revocation cache, token decisions are cached by the front; a key's never is, and
    the admission cache does not hold it either: a revocation through this instance ends it at once."""
    raw = key_config(tmp_path, upstream)
    config = make_config(**raw, decision={"front": "nginx", "max_age": "30s"},
                         store={"backend": "redis", "url": redis_url, "prefix": "svc-keys:", "revocation_cache": "20s"})
    app = create_app(config)
    gw = Gw(await aiohttp_client(app), await aiohttp_client(create_admin_app(app[GATEWAY])))
    key = (await gw.create("front-user", claims={"roles": ["r"]}))["key"]
    for credential in ({"X-Api-Key": key}, {"Authorization": f"Bearer {key}"}):
        asked = {"X-Original-Method": "GET", "X-Original-URI": "/machines/x", "Host": "app.example", **credential}
        for _ in range(2):
            resp = await gw.main.get("/auth/decide", headers=asked)
            assert resp.status == 200, await resp.text()
            assert resp.headers["X-User-Id"] == "service:front-user" and resp.headers["X-Accel-Expires"] == "0"
        assert "X-Api-Key" not in resp.headers
        assert (await gw.main.get("/machines/x", headers=credential)).status == 200
    assert app[GATEWAY].admissions is not None and len(app[GATEWAY].admissions) == 0
    assert (await gw.revoke("front-user"))[0] == 200
    resp = await gw.main.get("/auth/decide", headers={"X-Original-Method": "GET", "X-Original-URI": "/machines/x",
                                                      "Host": "app.example", "X-Api-Key": key})
    assert resp.status == 401 and (await resp.json())["code"] == "service_key_revoked"
    assert (await gw.main.get("/machines/x", headers=bearer(key))).status == 401


def test_every_front_removes_the_key_header_and_envoy_sends_it_to_the_check(make_config, upstream, tmp_path):
    from gateway.decision.configs import render
    from gateway.decision.fronts import FRONTS
    from gateway.upstream.headers import client_boundary

    config = make_config(**{**key_config(tmp_path, upstream), "service_keys": {"header": "X-Machine-Key"}})
    boundary = client_boundary(config)
    assert boundary.credentials == ("X-Machine-Key",) and boundary.covers("x-machine-key")
    for name, kind in FRONTS.items():
        assert kind.removes(boundary, "X-Machine-Key"), name
    envoy = "\n".join(render("envoy", config).values())
    assert "x-machine-key" in envoy.split("allowed_headers:")[1].split("http_service:")[0]  # sent to the check
    early = envoy.split("early_header_mutation_extensions:")[1].split("route_config:")[0]
    assert "machine" not in early  # not removed before ext_authz ...
    assert "request_headers_to_remove: [x-machine-key]" in envoy  # ... but before the app (a route forwards Authorization)
    nginx = "\n".join(render("nginx", config).values())
    assert 'proxy_set_header X-Machine-Key "";' in nginx
    caddy = render("caddy", config)["Caddyfile"]
    assert caddy.index("forward_auth") < caddy.index("request_header -X-Machine-Key")
    haproxy = render("haproxy", config)["haproxy.cfg"]
    assert haproxy.index("lua.gateway-decide") < haproxy.index("del-header X-Machine-Key")


async def test_a_websocket_with_a_key_never_hands_the_key_to_the_upstream(gateways):
    gw = await gateways(websocket=True, forward_authorization=True)
    key = (await gw.create("socket-client"))["key"]
    for headers in ({"X-Api-Key": key}, {"Authorization": f"Bearer {key}"}):
        async with gw.main.ws_connect("/machines/feed", headers=headers) as ws:
            await ws.send_str("/info")  # the example upstream's own socket answers with what it was sent
            seen = {k.lower(): v for k, v in json.loads(await ws.receive_str(timeout=10))["headers"].items()}
        assert seen["x-user-id"] == "service:socket-client"
        assert "authorization" not in seen and "x-api-key" not in seen and key not in json.dumps(seen)


async def test_a_reload_keeps_the_database_and_the_keys(aiohttp_client, upstream, users_file, tmp_path):
    import yaml

    from gateway.config import load_config
    from gateway.server.reload import Reloader
    from tests.conftest import base_config

    path = tmp_path / "gateway.yaml"
    raw = {**base_config(upstream, users_file), **key_config(tmp_path, upstream)}
    path.write_text(yaml.safe_dump(raw))
    app = create_app(load_config(path))
    gw = Gw(await aiohttp_client(app), await aiohttp_client(create_admin_app(app[GATEWAY])))
    key = (await gw.create("survivor"))["key"]
    running = app[GATEWAY].runtime.credentials
    raw["service_keys"] = {"cache": "2s", "header": "X-Machine-Key"}
    path.write_text(yaml.safe_dump(raw))
    assert await Reloader(app[GATEWAY], path).reload()
    runtime = app[GATEWAY].runtime
    assert runtime.credentials is running and runtime.service_keys is not None
    assert runtime.service_keys.table.db is running.db
    assert (await gw.main.get("/machines/x", headers={"X-Machine-Key": key})).status == 200
    resp = await gw.main.get("/machines/x", headers={"X-Api-Key": key})  # no longer the key's header: no credential
    assert resp.status == 401 and (await resp.json())["code"] == "authentication_required"
    assert "x-machine-key" not in {k.lower() for k in (await (await gw.main.get(
        "/machines/x", headers={"X-Machine-Key": key})).json())["headers"]}


async def test_with_bearer_off_only_the_header_carries_a_key(make_config, upstream, tmp_path, aiohttp_client):
    raw = key_config(tmp_path, upstream)
    raw["service_keys"] = {"bearer": False}
    app = create_app(make_config(**raw))
    gw = Gw(await aiohttp_client(app), await aiohttp_client(create_admin_app(app[GATEWAY])))
    key = (await gw.create("header-only"))["key"]
    assert (await gw.main.get("/machines/x", headers={"X-Api-Key": key})).status == 200
    resp = await gw.main.get("/machines/x", headers=bearer(key))  # read as a (bad) token, not as a key
    assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"
