"""Reading the original request a front proxy describes (gateway/decision/front.py), on request objects.

tests/http/test_decision.py runs the same through a real socket; these pin each rule with its answer.
"""
from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.config.boundary import ClientBoundary, ClientHeaders
from gateway.config.decision import Decision
from gateway.decision.front import Front
from gateway.errors import GatewayError

BOUNDARY = ClientBoundary.build(["X-User-Id"], ["X-Auth-"], ClientHeaders())


def front(kind: str = "nginx", **settings: Any) -> Front:
    return Front(Decision(front=kind, **settings), BOUNDARY)


def request(headers: list[tuple[str, str]], path: str = "/auth/decide", method: str = "GET",
            remote: str = "127.0.0.1") -> web.Request:
    return make_mocked_request(method, path, headers=CIMultiDict(headers)).clone(remote=remote)


def bad_request(call, *args: Any) -> str:
    with pytest.raises(GatewayError) as info:
        call(*args)
    assert info.value.status == 400
    return info.value.detail


NGINX = [("X-Original-Method", "POST"), ("X-Original-URI", "/api/x?a=1"), ("Host", "app.example")]
TRAEFIK = [("X-Forwarded-Method", "PUT"), ("X-Forwarded-Uri", "/api/y"), ("X-Forwarded-Host", "app.example"),
           ("Host", "gateway:8080")]


def test_where_each_front_describes_the_request():
    nginx = front("nginx")
    original = nginx.original(request([*NGINX, ("Accept", "text/html"), ("Content-Length", "0")]))
    assert original.target == "/api/x?a=1" and original.request.method == "POST"
    assert list(original.request.headers.items()) == [("Accept", "text/html"), ("Host", "app.example")]
    for kind in ("traefik", "caddy", "haproxy"):
        original = front(kind).original(request([*TRAEFIK, ("Accept", "*/*"), ("Transfer-Encoding", "chunked")]))
        assert original.target == "/api/y" and original.request.method == "PUT", kind
        assert sorted(original.request.headers.items()) == [("Accept", "*/*"), ("Host", "app.example")], kind
    envoy = front("envoy", path="/authz")
    original = envoy.original(request([("Host", "app.example"), ("Upgrade", "h2c"), ("Connection", "x")], "/authz/api/z?q",
                                      method="DELETE"))
    assert original.target == "/api/z?q" and original.request.method == "DELETE"
    assert list(original.request.headers.items()) == [("Host", "app.example")]


@pytest.mark.parametrize("missing", ["X-Original-Method", "X-Original-URI", "Host"])
def test_each_describing_header_exactly_once(missing):
    without = [(k, v) for k, v in NGINX if k != missing]
    assert bad_request(front().original, request(without)) == f"The front proxy must send exactly one {missing} header"
    twice = [*NGINX, next((k, v) for k, v in NGINX if k == missing)]
    assert bad_request(front().original, request(twice)) == f"The front proxy must send exactly one {missing} header"


@pytest.mark.parametrize("method", ["get", "GET ", "", "G:T", "A" * 33, "1GET"])
def test_the_original_method_must_be_a_method(method):
    headers = [("X-Original-Method", method), ("X-Original-URI", "/x"), ("Host", "h")]
    assert bad_request(front().original, request(headers)) == "The original method is not a method"


@pytest.mark.parametrize("method", ["GET", "M-SEARCH", "A" * 32, "PROPFIND"])
def test_methods_llhttp_takes(method):
    headers = [("X-Original-Method", method), ("X-Original-URI", "/x"), ("Host", "h")]
    assert front().original(request(headers)).request.method == method


@pytest.mark.parametrize("target", ["x", "", "http://evil/x", "/a b", "/\u00e9", "/x\x7f", "*"])
def test_the_original_target_must_be_an_absolute_path(target):
    headers = [("X-Original-Method", "GET"), ("X-Original-URI", target), ("Host", "h")]
    assert bad_request(front().original, request(headers)) == "The original request target is not an absolute path"


def test_websocket_handshakes_are_recognised_without_upgrade():
    for marker in ("Sec-WebSocket-Key", "Sec-WebSocket-Version"):
        original = front().original(request([*NGINX, (marker, "13")]))
        assert original.request.headers["Upgrade"] == "websocket" and original.request.headers["Connection"] == "Upgrade"
    plain = front().original(request(NGINX))
    assert "Upgrade" not in plain.request.headers and "Connection" not in plain.request.headers


def test_which_paths_are_decision_requests():
    nginx = front("nginx")
    assert nginx.serves("/auth/decide") and nginx.serves("/auth/decide/") and nginx.serves("/auth/decide?x=1")
    assert not nginx.serves("/auth/decide/x") and not nginx.serves("/auth/decidex") and not nginx.serves("/auth")
    envoy = front("envoy", path="/authz")
    assert envoy.serves("/authz") and envoy.serves("/authz/") and envoy.serves("/authz/api/x?y")
    assert not envoy.serves("/authzx") and not envoy.serves("/auth")


def test_who_may_ask():
    local = front()
    assert local.allowed(request([], remote="127.0.0.1")) and local.allowed(request([], remote="127.9.9.9"))
    assert local.allowed(request([], remote="::1"))
    assert local.allowed(request([], remote="::ffff:127.0.0.1"))  # IPv4-mapped: the IPv4 address decides
    assert not local.allowed(request([], remote="10.0.0.1")) and not local.allowed(request([], remote="::2"))
    assert not local.allowed(request([], remote="not-an-address"))
    assert not local.allowed(make_mocked_request("GET", "/auth/decide").clone(remote=None))
    fronts = front(allow_from=("10.0.0.0/8",))
    assert fronts.allowed(request([], remote="10.1.2.3")) and not fronts.allowed(request([], remote="127.0.0.1"))


def test_remembered_peers_are_bounded():
    local = front()
    for i in range(1024):
        assert not local.allowed(request([], remote=f"10.0.{i // 256}.{i % 256}"))
        assert len(local._peers) == i + 1
    assert local.allowed(request([], remote="127.0.0.1"))  # the 1025th address: forgotten all at once, then this one
    assert local._peers == {"127.0.0.1": True}
    assert local.allowed(request([], remote="127.0.0.1")) and local._peers == {"127.0.0.1": True}


def test_what_the_front_would_let_through():
    nginx = front("nginx")
    clean = nginx.original(request([*NGINX, ("Accept", "*/*"), ("X-Real-IP", "1.2.3.4")])).request
    assert nginx.unstripped(clean) is None  # X-Real-IP: nginx removes it by its generated config
    leaky = nginx.original(request([*NGINX, ("Accept", "*/*"), ("X-Forwarded-Odd", "1"), ("X-Forwarded-Other", "2")])).request
    assert nginx.unstripped(leaky) == "X-Forwarded-Odd"
    caddy = front("caddy")
    assert caddy.unstripped(caddy.original(request([*TRAEFIK, ("X-Forwarded-Odd", "1")])).request) is None
    assert caddy.padding == ("X-User-Id",) and front("nginx").padding == ()


@pytest.mark.parametrize("kind", ["nginx", "traefik", "caddy", "haproxy", "envoy"])
def test_what_passes_is_remembered_per_name_and_answered_the_same(kind: str):
    """unstripped's answer per header name, kept within upstream.headers.remember's bound: asked again, the same."""
    local = front(kind)
    names = ["Accept", "X-User-Id", "x_user_id", "X.User.Id", "X-Auth-Level", "X-Real-IP", "X-Forwarded-Odd", "Cookie"]
    fresh = {n: BOUNDARY.covers(n) and not local.kind.removes(BOUNDARY, n) for n in names}
    for _ in range(2):
        for name in names:
            headers = CIMultiDict([("Host", "app.example"), (name, "1")])
            assert local.unstripped(make_mocked_request("GET", "/", headers=headers)) == (name if fresh[name] else None)
    assert {n: local._passing[n] for n in names} == fresh
