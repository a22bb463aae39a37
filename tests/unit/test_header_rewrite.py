"""The header rewrite (gateway/upstream/headers.py) on one request object, without sockets.

tests/http/test_proxy.py and test_trust_boundary.py check the same through real upstreams; these name every header
the upstream gets, with expectations written out here (never the module's own lists), so a header that slips
through or an injected one that goes missing fails here first.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.config import Route, parse_config
from gateway.config.boundary import ClientBoundary, ClientHeaders
from gateway.context import CLIENT
from gateway.forwarded import identify
from gateway.net import Host, TrustedProxies, parse_network
from gateway.upstream.headers import HeaderRewrite, claim_headers, client_boundary, connection_tokens
from tests.conftest import base_config

ORIGIN = ("https", Host("gw.example", None))


def request(headers: list[tuple[str, str]], remote: str | None = "203.0.113.7",
            trust: TrustedProxies | None = None) -> web.Request:
    """A request as the admission middleware leaves it: its client identified under ``trust``."""
    req = make_mocked_request("GET", "/api/x", headers=CIMultiDict(headers)).clone(remote=remote)
    req[CLIENT] = identify(req, trust or TrustedProxies())
    return req


def route(**kw: Any) -> Route:
    return Route(name="r", prefix="/api", upstream="http://u", **kw)


def rewrite(**settings: Any) -> HeaderRewrite:
    boundary = ClientBoundary.build(["X-User-Id", "X-User-Roles"], ["X-Auth-"], ClientHeaders(**settings))
    return HeaderRewrite(boundary)


def upstream_headers(headers: list[tuple[str, str]], rw: HeaderRewrite | None = None, claims: dict | None = None,
                     remote: str | None = "203.0.113.7", trust: TrustedProxies | None = None,
                     **route_kw: Any) -> CIMultiDict[str]:
    r = route(headers={"X-User-Id": "sub", "X-User-Roles": "roles"}, **route_kw)
    return (rw or rewrite()).headers(request(headers, remote, trust), r, claim_headers(r, claims), "req-1",
                                     Host("gw.example", 8443), ORIGIN)


def test_exactly_these_headers_reach_the_upstream():
    out = upstream_headers([("Accept", "text/html"), ("Host", "evil.example"), ("Authorization", "Bearer t"),
                            ("X-Real-IP", "1.2.3.4"), ("X-User-Id", "root"), ("X-Auth-Level", "9"), ("Cookie", "a=b")],
                           claims={"sub": "alice", "roles": ["admin", "user"]})
    assert list(out.items()) == [
        ("Accept", "text/html"), ("Cookie", "a=b"),
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "gw.example"),
        ("Forwarded", 'for=203.0.113.7;host="gw.example";proto=https'), ("X-Request-Id", "req-1"),
        ("X-User-Id", "alice"), ("X-User-Roles", "admin,user"),
    ]


@pytest.mark.parametrize("name", ["Host", "host", "HOST"])
def test_the_clients_host_never_reaches_the_upstream(name):
    assert "Host" not in upstream_headers([(name, "evil.example")])
    assert rewrite().dropped(name) and rewrite().dropped(name, from_proxy=True)
    preserved = upstream_headers([(name, "evil.example")], preserve_host=True)
    assert preserved.getall("Host") == ["gw.example:8443"]  # the validated Host, never the client's text


@pytest.mark.parametrize("name", ["Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
                                  "TE", "Trailer", "Transfer-Encoding", "Upgrade", "upgrade"])
def test_hop_by_hop_headers_are_dropped(name):
    assert name.lower() not in {k.lower() for k in upstream_headers([(name, "x"), ("Accept", "*/*")])}


def test_upgrade_is_not_forwarded_on_plain_requests():
    out = upstream_headers([("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")])
    assert "Upgrade" not in out and "Connection" not in out and "HTTP2-Settings" not in out  # named by Connection


def test_headers_named_in_connection_are_dropped():
    out = upstream_headers([("Connection", "X-A, x-b"), ("Connection", " X-C ,,"), ("X-A", "1"), ("X-B", "2"), ("X-C", "3"),
                            ("X-D", "4")])
    assert [k for k in out if k.startswith("X-") and len(k) == 3] == ["X-D"]


def test_connection_tokens():
    req = request([("Connection", "Keep-Alive, X-Secret"), ("Connection", " ,Foo")])
    assert connection_tokens(req.headers.getall("Connection")) == {"keep-alive", "x-secret", "foo"}
    assert connection_tokens([]) == set()


def test_authorization_only_where_the_route_forwards_it():
    assert "Authorization" not in upstream_headers([("Authorization", "Bearer t")])
    assert "authorization" not in upstream_headers([("authorization", "Bearer t")])
    assert upstream_headers([("Authorization", "Bearer t")], forward_authorization=True).getall("Authorization") == ["Bearer t"]


def test_identity_headers_come_from_the_claims_only():
    out = upstream_headers([("X-User-Id", "root"), ("x_user_roles", "admin"), ("X-Auth-Tenant", "other")],
                           claims={"sub": "alice"})
    assert out.getall("X-User-Id") == ["alice"]
    assert "X-User-Roles" not in out and "x_user_roles" not in out and "X-Auth-Tenant" not in out
    anonymous = upstream_headers([("X-User-Id", "root")], claims=None)
    assert "X-User-Id" not in anonymous


def test_claims_are_encoded():
    out = upstream_headers([], claims={"sub": "a\r\nX-Injected: 1", "roles": ["r,1", "é"]})
    assert out["X-User-Id"] == "a%0D%0AX-Injected: 1" and out["X-User-Roles"] == "r%2C1,%C3%A9"


def test_forwarding_headers_of_an_untrusted_peer_are_replaced():
    out = upstream_headers([("X-Forwarded-For", "1.1.1.1"), ("Forwarded", "for=1.1.1.1"), ("X-Forwarded-Proto", "http"),
                            ("X-Forwarded-Host", "evil"), ("X-Forwarded-Port", "1"), ("X-Request-Id", "mine")])
    assert out.getall("X-Forwarded-For") == ["203.0.113.7"]
    assert out.getall("Forwarded") == ['for=203.0.113.7;host="gw.example";proto=https']
    assert out.getall("X-Forwarded-Proto") == ["https"] and out.getall("X-Forwarded-Host") == ["gw.example"]
    assert out.getall("X-Request-Id") == ["req-1"] and "X-Forwarded-Port" not in out


def test_a_trusted_proxys_chains_are_extended():
    trusted = TrustedProxies(networks=(parse_network("203.0.113.0/24"),))
    out = upstream_headers([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2"), ("Forwarded", "for=1.1.1.1"),
                            ("Forwarded", "for=2.2.2.2"), ("X-Forwarded-Port", "443"), ("X-Forwarded-User", "root")],
                           trust=trusted)
    assert out.getall("X-Forwarded-For") == ["1.1.1.1,2.2.2.2, 203.0.113.7"]
    assert out.getall("Forwarded") == ['for=1.1.1.1,for=2.2.2.2, for=203.0.113.7;host="gw.example";proto=https']
    assert out.getall("X-Forwarded-Port") == ["443"]  # other X-Forwarded-* of a trusted proxy pass
    assert "X-Forwarded-User" not in out  # identities never
    other_peer = upstream_headers([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-Port", "443")], trust=trusted,
                                  remote="198.51.100.1")
    assert other_peer.getall("X-Forwarded-For") == ["198.51.100.1"] and "X-Forwarded-Port" not in other_peer


@pytest.mark.parametrize("remote, node", [("2001:db8::1", '"[2001:db8::1]"'), ("192.0.2.1", "192.0.2.1"),
                                          (None, "unknown"), ("not-an-address", "unknown")])
def test_forwarded_nodes(remote, node):
    out = upstream_headers([], remote=remote)
    assert out["Forwarded"] == f'for={node};host="gw.example";proto=https'
    assert out["X-Forwarded-For"] == (remote or "")


def test_underscores_and_configured_lists():
    assert upstream_headers([("Accept_Language", "x")]).get("Accept_Language") is None
    relaxed = rewrite(allow_underscores=True, keep=("X-Real-IP",), strip=("X-Tenant",))
    out = upstream_headers([("Accept_Language", "x"), ("X-Real-IP", "1.2.3.4"), ("X-Tenant", "t"), ("X_Real_IP", "5")], relaxed)
    assert out.getall("Accept_Language") == ["x"] and out.getall("X-Real-IP") == ["1.2.3.4"]
    assert "X-Tenant" not in out and out.getall("X_Real_IP") == ["5"]


def test_the_boundary_of_a_configuration(tmp_path: Path):
    raw = base_config("http://u", tmp_path / "users.yaml", identity_header_prefixes=["X-Id-"],
                      client_headers={"strip": ["X-Tenant"]})
    boundary = client_boundary(parse_config(raw, tmp_path))
    assert boundary.identity == ("X-User-Id", "X-User-Roles", "X-User-Email", "X-Auth-Tenant", "X-Gateway-Identity")
    assert boundary.prefixes == ("X-Id-",)
    for name in ("X-User-Email", "x-auth-tenant", "X-Gateway-Identity", "X-Id-Anything", "X-Tenant", "X-Real-IP"):
        assert boundary.covers(name), name
    assert not boundary.covers("X-User-Other")  # no longer a family here: prefixes replaced


def test_dropped_assumes_an_untrusted_peer_unless_told():
    assert rewrite().dropped("X-Forwarded-Port") and rewrite().dropped("X-Forwarded-Port", from_proxy=False)
    assert not rewrite().dropped("X-Forwarded-Port", from_proxy=True)
    assert rewrite().dropped("X-Forwarded-For", from_proxy=True) and not rewrite().dropped("Accept")


def test_answers_per_name_are_remembered_within_a_bound() -> None:
    """A name's answer is folded and looked up once; made-up names cannot grow the memory past its bound."""
    from gateway.upstream.headers import _REMEMBERED_LENGTH, _REMEMBERED_NAMES

    rw = rewrite()
    names = ["X-User-Id", "x_user_id", "Host", "Accept", "X-Forwarded-Port", "X-Forwarded-For", "X-Real-IP", "X.Auth.Level"]
    fresh = {(n, p): n.lower() == "host" or rw.boundary.covers(n, trust_forwarded=p) for n in names for p in (False, True)}
    assert fresh[("X-Forwarded-Port", False)] and not fresh[("X-Forwarded-Port", True)]  # each (name, peer) its own
    for _ in range(2):  # asked twice: the same answers, from memory the second time
        assert {(n, p): rw.dropped(n, p) for n, p in fresh} == fresh
    for n in range(_REMEMBERED_NAMES + 10):
        rw.dropped(f"X-Made-Up-{n}")
    assert len(rw._dropped) <= _REMEMBERED_NAMES
    assert {(n, p): rw.dropped(n, p) for n, p in fresh} == fresh
    rw._dropped.clear()
    long_names = ["X-" + "a" * (_REMEMBERED_LENGTH - 1), "X-User_" + "b" * _REMEMBERED_LENGTH]
    assert [rw.dropped(n) for n in long_names] == [False, True]  # answered, never remembered
    assert rw._dropped == {}
