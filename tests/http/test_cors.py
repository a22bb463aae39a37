"""CORS: preflights answered at the gateway, allowed origins echoed, refused origins get a bare 403."""
from __future__ import annotations

import pytest
from aiohttp import web

from gateway.config import ConfigError
from tests.conftest import PASSWORDS, bearer, login

APP = "https://app.example.com"
CORS = {"allow_origins": [APP, "https://*.example.org"], "allow_credentials": True, "max_age": "10m"}


def preflight(origin: str, method: str, headers: str = "") -> dict[str, str]:
    out = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        out["Access-Control-Request-Headers"] = headers
    return out


def cors_headers(resp) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}


@pytest.fixture
async def counting_upstream(aiohttp_server):
    """An upstream that counts what reaches it and sends CORS headers of its own."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.json_response({"ok": True}, headers={
            "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "*", "Vary": "Accept-Encoding"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


async def test_preflight_for_a_proxied_route_is_answered_by_the_gateway(make_gateway, counting_upstream):
    url, seen = counting_upstream
    gw = await make_gateway(cors=CORS, routes=[{"prefix": "/api", "upstream": url}])
    resp = await gw.options("/api/orders", headers=preflight(APP, "PUT", "authorization, content-type"))
    assert resp.status == 204 and seen == []
    assert cors_headers(resp) == {
        "Access-Control-Allow-Origin": APP,
        "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, X-CSRF-Token, X-Request-Id",
        "Access-Control-Max-Age": "600",
        "Access-Control-Allow-Credentials": "true",
    }
    assert "Origin" in resp.headers["Vary"]


async def test_preflight_for_gateway_endpoints(make_gateway):
    gw = await make_gateway(cors=CORS, compat=[{"profile": "simplejwt"}])
    for path in ("/auth/token", "/auth/token/refresh/", "/api/token/"):
        resp = await gw.options(path, headers=preflight(APP, "POST", "content-type"))
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == APP, path
    resp = await gw.options("/auth/token", headers=preflight(APP, "PUT"))  # the endpoint takes POST only
    assert resp.status == 403 and cors_headers(resp) == {}
    resp = await gw.options("/auth/me", headers=preflight(APP, "GET", "authorization"))
    assert resp.status == 204


@pytest.mark.parametrize(
    "origin,method,headers",
    [
        ("https://evil.example.net", "GET", ""),  # origin not listed
        ("https://example.org", "GET", ""),  # the wildcard covers subdomains only
        ("http://app.example.com", "GET", ""),  # another scheme is another origin
        ("null", "GET", ""),  # sandboxed frames and file:// pages
        (APP, "GET", "x-secret-header"),  # header not allowed
        (APP, "TRACE", ""),  # method not allowed
        (APP, "GET", ""),  # no route for the path
    ],
)
async def test_refused_preflights_get_a_bare_403(make_gateway, counting_upstream, origin, method, headers):
    url, seen = counting_upstream
    gw = await make_gateway(cors=CORS, routes=[{"prefix": "/api", "upstream": url}])
    path = "/nowhere" if (origin, method, headers) == (APP, "GET", "") else "/api/x"
    resp = await gw.options(path, headers=preflight(origin, method, headers))
    assert resp.status == 403 and cors_headers(resp) == {} and seen == []
    assert (await resp.json())["code"] in {"origin_not_allowed", "cors_refused"}


async def test_actual_responses_echo_the_origin_and_replace_upstream_cors(make_gateway, counting_upstream):
    url, seen = counting_upstream
    gw = await make_gateway(cors=CORS, routes=[{"prefix": "/api", "upstream": url}])
    tokens = await login(gw)
    resp = await gw.get("/api/x", headers={"Origin": "https://shop.example.org", **bearer(tokens["access"])})
    assert resp.status == 200 and seen == ["GET"]
    assert cors_headers(resp) == {
        "Access-Control-Allow-Origin": "https://shop.example.org",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "X-Request-Id",
    }  # the upstream's "*" is gone
    assert resp.headers["Vary"] == "Accept-Encoding, Origin"


async def test_errors_carry_cors_headers_so_the_page_can_read_the_401(make_gateway):
    gw = await make_gateway(cors=CORS)
    resp = await gw.get("/api/x", headers={"Origin": APP, **bearer("not.a.token")})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == APP
    resp = await gw.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]}, headers={"Origin": APP})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == APP


async def test_requests_from_refused_origins_never_reach_the_upstream(make_gateway, counting_upstream):
    url, seen = counting_upstream
    gw = await make_gateway(cors=CORS, routes=[{"prefix": "/public", "upstream": url, "auth": "none"}])
    resp = await gw.post("/public/form", data=b"a=1", headers={"Origin": "https://evil.example.net"})
    assert resp.status == 403 and (await resp.json())["code"] == "origin_not_allowed"
    assert cors_headers(resp) == {} and seen == []
    # same-origin requests (the page is served through the gateway) and non-browser clients pass
    own = f"http://{gw.host}:{gw.port}"
    assert (await gw.post("/public/form", data=b"a=1", headers={"Origin": own})).status == 200
    assert (await gw.post("/public/form", data=b"a=1")).status == 200
    assert seen == ["POST", "POST"]


async def test_wildcard_origin_without_credentials_still_echoes(make_gateway):
    gw = await make_gateway(cors={"allow_origins": ["*"], "allow_headers": ["*"], "expose_headers": []})
    resp = await gw.options("/api/x", headers=preflight("https://anyone.test", "GET", "x-custom, authorization"))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "https://anyone.test"
    assert resp.headers["Access-Control-Allow-Headers"] == "x-custom, authorization"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    resp = await gw.get("/public/x", headers={"Origin": "https://anyone.test"})
    assert cors_headers(resp) == {"Access-Control-Allow-Origin": "https://anyone.test"}


async def test_cors_off_by_default(gateway):
    resp = await gateway.get("/public/x", headers={"Origin": "https://evil.example.net"})
    assert resp.status == 200 and cors_headers(resp) == {}


@pytest.mark.parametrize(
    "cors,problem",
    [
        ({"allow_origins": ["*"], "allow_credentials": True}, "cors: allow_origins: '*' cannot be combined with allow_credentials"),
        ({"allow_origins": ["https://app.example.com/path"]}, "cors.allow_origins: 'https://app.example.com/path' is not an origin"),
        ({"allow_origins": ["app.example.com"]}, "is not an origin"),
        ({"allow_origins": [APP], "allow_methods": ["GET POST"]}, "cors.allow_methods:"),
        ({"allow_origins": [APP], "allow_credentials": True, "expose_headers": ["*"]}, "expose_headers: '*' cannot be combined"),
    ],
)
def test_cors_config_errors(make_config, cors, problem):
    with pytest.raises(ConfigError) as info:
        make_config(cors=cors)
    assert any(problem in p for p in info.value.problems), info.value.problems


async def test_cookie_modes_csrf_header_is_allowed_cross_origin(make_gateway):
    gw = await make_gateway(cors={"allow_origins": [APP], "allow_headers": ["Content-Type"], "allow_credentials": True},
                            cookies={"enabled": True, "csrf_header": "X-XSRF-TOKEN"})
    resp = await gw.options("/api/x", headers=preflight(APP, "POST", "content-type, x-xsrf-token"))
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Headers"] == "Content-Type, X-XSRF-TOKEN"
