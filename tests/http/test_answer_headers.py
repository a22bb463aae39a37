"""The headers every answer carries (X-Request-Id, Server, CORS, RateLimit) are set once, without a prepare hook.

Proxied answers, the gateway's own endpoints, refusals, preflights and websocket
handshakes: each carries the request id the upstream saw exactly once and the
configured ``Server`` header (an upstream's own ``Server`` is kept).
"""
from __future__ import annotations

import pytest
from aiohttp import web
from multidict import CIMultiDict

from gateway.app import create_app
from tests.conftest import bearer, login

APP = "https://app.example.com"


@pytest.fixture
async def branded_upstream(aiohttp_server) -> str:
    """An upstream that names itself in ``Server`` and sends its own request-id header."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, headers={"Server": "branded/1.0", "X-Request-Id": "upstream-made"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def _one(resp, name: str) -> str:
    values = resp.headers.getall(name, [])
    assert len(values) == 1, (name, values)
    return str(values[0])


async def test_every_kind_of_answer_carries_the_request_id_and_server_once(make_gateway, upstream):
    gateway = await make_gateway(server_header="edge", cors={"allow_origins": [APP]})
    tokens = await login(gateway)
    answers = {
        "proxied": await gateway.get("/api/x", headers={**bearer(tokens["access"]), "X-Request-Id": "r-proxied"}),
        "public": await gateway.get("/public/x", headers={"X-Request-Id": "r-public"}),
        "endpoint": await gateway.get("/auth/me", headers={**bearer(tokens["access"]), "X-Request-Id": "r-endpoint"}),
        "401": await gateway.get("/api/x", headers={"X-Request-Id": "r-401"}),
        "404": await gateway.get("/nowhere", headers={"X-Request-Id": "r-404"}),
        "preflight": await gateway.options("/api/x", headers={
            "X-Request-Id": "r-preflight", "Origin": APP, "Access-Control-Request-Method": "GET"}),
        "cors": await gateway.get("/public/x", headers={"X-Request-Id": "r-cors", "Origin": APP}),
    }
    for name, resp in answers.items():
        assert _one(resp, "X-Request-Id") == f"r-{name}", name
        assert _one(resp, "Server") == "edge", name
    assert answers["proxied"].status == 200 and answers["401"].status == 401 and answers["404"].status == 404
    assert _one(answers["cors"], "Access-Control-Allow-Origin") == APP
    assert _one(answers["preflight"], "Access-Control-Allow-Origin") == APP
    echoed = CIMultiDict((await answers["proxied"].json())["headers"])
    assert echoed["X-Request-Id"] == "r-proxied"  # the id the upstream saw is the one the client gets


async def test_no_response_prepare_hook_on_the_app(make_config):
    """Pinned on purpose: a hook would cost every answer a signal dispatch (docs/performance.md)."""
    app = create_app(make_config())
    assert len(app.on_response_prepare) == 0


async def test_the_upstreams_own_server_header_is_kept_but_not_its_request_id(make_gateway, branded_upstream):
    gateway = await make_gateway(routes=[{"name": "b", "prefix": "/b", "upstream": branded_upstream, "auth": "none"}])
    resp = await gateway.get("/b/x", headers={"X-Request-Id": "mine"})
    assert resp.status == 200
    assert _one(resp, "Server") == "branded/1.0"
    assert _one(resp, "X-Request-Id") == "mine"


async def test_rate_limited_route_headers_on_proxied_answers_and_refusals(make_gateway, upstream):
    gateway = await make_gateway(routes=[{"name": "rl", "prefix": "/rl", "upstream": upstream, "auth": "none",
                                          "rate_limit": {"requests": 1, "per": "60s", "key": "ip"}}])
    first = await gateway.get("/rl/x")
    second = await gateway.get("/rl/x")
    assert (first.status, second.status) == (200, 429)
    for resp in (first, second):
        assert _one(resp, "RateLimit-Policy") == '"rl";q=1;w=60'
        assert _one(resp, "RateLimit").startswith('"rl";r=')
        _one(resp, "X-Request-Id")
