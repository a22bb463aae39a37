"""routes[].networks on a real socket: the client address the gateway trusts picks the route.

Distinct loopback peers play the parts: 127.0.0.2 a trusted load balancer that
reports the client in X-Forwarded-For, 127.0.0.3 a client reaching the gateway
directly (its own X-Forwarded-For is a spoof). The office is 203.0.113.0/24,
plus 127.0.0.4 for a direct office client.
"""
from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.auth.admission_cache import AdmissionCache
from gateway.runtime import GATEWAY
from tests.conftest import bearer, login

PROXY, DIRECT, OFFICE_PEER = "127.0.0.2", "127.0.0.3", "127.0.0.4"
BOUND = aiohttp.ClientTimeout(total=20)


def settings(upstream: str) -> dict[str, Any]:
    """``auth: none`` for the office on /intranet, a token for everyone else; /team needs the admin role outside."""
    return {
        "trusted_proxies": [f"{PROXY}/32"],
        "networks": {"office": ["203.0.113.0/24", f"{OFFICE_PEER}/32", "2001:db8:1::/48"]},
        "routes": [
            {"name": "intranet-office", "prefix": "/intranet", "upstream": upstream, "auth": "none", "networks": ["office"]},
            {"name": "intranet", "prefix": "/intranet", "upstream": upstream, "headers": {"X-User-Id": "sub"}},
            {"name": "team-office", "prefix": "/team", "upstream": upstream, "networks": ["office"],
             "headers": {"X-User-Id": "sub"}},
            {"name": "team", "prefix": "/team", "upstream": upstream, "require": {"roles_any": ["admin"]}},
            {"name": "lab", "prefix": "/lab", "upstream": upstream, "auth": "none", "networks": ["198.51.100.0/24"]},
        ],
    }


async def call(gateway, source: str, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, Any]]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=BOUND) as session:
        async with session.request(method, f"http://127.0.0.1:{gateway.port}{path}", headers=headers) as resp:
            body = await resp.json() if resp.content_type == "application/json" else {}
            return resp.status, body


async def test_the_office_passes_without_a_token_and_everyone_else_needs_one(make_gateway, upstream):
    gateway = await make_gateway(**settings(upstream))
    assert (await call(gateway, PROXY, "/intranet/x", **{"X-Forwarded-For": "203.0.113.7"}))[0] == 200
    assert (await call(gateway, OFFICE_PEER, "/intranet/x"))[0] == 200  # a direct office client: its own address
    status, body = await call(gateway, PROXY, "/intranet/x", **{"X-Forwarded-For": "198.51.100.9"})
    assert (status, body["code"]) == (401, "authentication_required")  # the next route took it
    token = (await login(gateway, "bob"))["access"]
    status, body = await call(gateway, PROXY, "/intranet/x", **{"X-Forwarded-For": "198.51.100.9"}, **bearer(token))
    assert status == 200 and body["headers"]["X-User-Id"] == "bob"


async def test_without_a_later_route_other_clients_get_404(make_gateway, upstream):
    gateway = await make_gateway(**settings(upstream))
    status, body = await call(gateway, DIRECT, "/lab/x")
    assert (status, body["code"]) == (404, "not_found")
    assert (await call(gateway, PROXY, "/lab/x", **{"X-Forwarded-For": "198.51.100.1"}))[0] == 200


@pytest.mark.parametrize("forwarded", [
    {"X-Forwarded-For": "203.0.113.7"},
    {"X-Forwarded-For": "203.0.113.7, 203.0.113.8"},
    {"Forwarded": "for=203.0.113.7"},
    {"X-Real-IP": "203.0.113.7"},
])
async def test_a_spoofed_forwarding_header_from_an_untrusted_peer_is_not_the_office(make_gateway, upstream, forwarded):
    gateway = await make_gateway(**settings(upstream))
    status, body = await call(gateway, DIRECT, "/intranet/x", **forwarded)
    assert (status, body["code"]) == (401, "authentication_required")


async def test_an_address_the_client_prepends_behind_the_proxy_does_not_count(make_gateway, upstream):
    """The proxy appends the address it saw; whatever the client sent is left of it."""
    gateway = await make_gateway(**settings(upstream))
    status, _ = await call(gateway, PROXY, "/intranet/x", **{"X-Forwarded-For": "203.0.113.7, 198.51.100.9"})
    assert status == 401
    assert (await call(gateway, PROXY, "/intranet/x", **{"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}))[0] == 200


async def test_ipv6_clients_behind_the_proxy(make_gateway, upstream):
    gateway = await make_gateway(**settings(upstream))
    assert (await call(gateway, PROXY, "/intranet/x", **{"X-Forwarded-For": "[2001:db8:1::5]:4711"}))[0] == 200
    assert (await call(gateway, PROXY, "/intranet/x", **{"X-Forwarded-For": "2001:db8:2::5"}))[0] == 401
    assert (await call(gateway, PROXY, "/intranet/x", **{"X-Forwarded-For": "::ffff:203.0.113.7"}))[0] == 200


async def test_an_admission_is_cached_per_route_so_another_network_is_decided_afresh(make_gateway, upstream):
    """The admission cache keys on (credential, route): a network picks the route before the cache is asked, so
    an admission on the office route never admits the same token from outside, where another route decides."""
    gateway = await make_gateway(**settings(upstream))
    cache: AdmissionCache | None = gateway.server.app[GATEWAY].admissions
    assert cache is not None
    token = (await login(gateway, "bob"))["access"]  # bob is no admin
    office, outside = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"}
    for _ in range(2):
        status, body = await call(gateway, PROXY, "/team/x", **office, **bearer(token))
        assert status == 200 and body["headers"]["X-User-Id"] == "bob"
    assert cache.hits == 1
    for _ in range(2):
        status, body = await call(gateway, PROXY, "/team/x", **outside, **bearer(token))
        assert (status, body["code"]) == (403, "permission_denied")
    assert (await call(gateway, PROXY, "/team/x", **office, **bearer(token)))[0] == 200


async def test_cors_preflights_see_the_client_too(make_gateway, upstream):
    gateway = await make_gateway(**settings(upstream), cors={"allow_origins": ["https://app.example"]})
    asked = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    office = await call(gateway, OFFICE_PEER, "/lab/x", "OPTIONS", **asked)
    outside = await call(gateway, DIRECT, "/lab/x", "OPTIONS", **asked)
    assert office[0] == 403 and outside[0] == 403  # /lab is 198.51.100.0/24 only
    assert (await call(gateway, PROXY, "/lab/x", "OPTIONS", **asked, **{"X-Forwarded-For": "198.51.100.1"}))[0] == 204


async def test_decision_mode_decides_for_the_client_the_front_reports(make_gateway, upstream):
    """The decision request comes from the front (127.0.0.1, trusted): its X-Forwarded-For is the client."""
    config = settings(upstream) | {"trusted_proxies": ["127.0.0.1/32"], "decision": {"front": "nginx"}}
    gateway = await make_gateway(**config)

    async def decide(**headers: str):
        return await gateway.get("/auth/decide", headers={"X-Original-Method": "GET", "X-Original-URI": "/intranet/x",
                                                          "Host": "app.example", **headers})

    office = await decide(**{"X-Forwarded-For": "203.0.113.7"})
    assert office.status == 200 and office.headers["Cache-Control"] == "no-store"
    outside = await decide(**{"X-Forwarded-For": "198.51.100.9"})
    assert outside.status == 401 and (await outside.json())["code"] == "authentication_required"
    assert (await decide()).status == 401  # the front itself is not in the office


async def test_decision_mode_without_trust_believes_no_forwarded_address(make_gateway, upstream):
    config = settings(upstream) | {"trusted_proxies": [], "decision": {"front": "nginx"}}
    gateway = await make_gateway(**config)
    resp = await gateway.get("/auth/decide", headers={"X-Original-Method": "GET", "X-Original-URI": "/intranet/x",
                                                      "Host": "app.example", "X-Forwarded-For": "203.0.113.7"})
    assert resp.status == 401
