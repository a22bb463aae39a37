"""Issue 9, the trust boundary: what the upstream reads is exactly what the gateway checked.

The gateway runs as a real `gateway run` process in front of real upstream servers that nobody here
wrote (tests/upstreams/, launched by tests/ops_support.py on free ports): Flask on gunicorn 21.2
(CGI-style header names), Express 4 with method-override and case-insensitive routing, Debian's nginx
with two name-based vhosts, and a stdlib http.server routing on ``unquote(urlparse(path).path)``.
Every upstream answer names the handler that ran and the identity it saw.

The oracle never asks the gateway's router: a request is fine when the gateway refused it itself (4xx
in its JSON shape, no upstream marker), or when the handler that answered is one the caller's
credentials are authorised for under the route rules below, and the identity the upstream read is
the caller's own (none for anonymous). Requests go over raw sockets, so header names, Host and path
reach the gateway exactly as written. Hypothesis draws the variants (derandomized: CI is reproducible).
"""
from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.conftest import PASSWORDS, SECRET, gateway_command
from tests.support.processes import (
    RawReply,
    ServerProcess,
    express,
    gunicorn_flask,
    nginx,
    raw_request,
    stdlib_server,
    websocket_handshake,
)

# Bounded: no shrinking (a falsifying example is printed as found), a fixed seed, no example database.
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow])


def examples(*cases: tuple[Any, ...]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The issue's own cases, always tried before the generated ones."""
    def wrap(test: Callable[..., None]) -> Callable[..., None]:
        for case in reversed(cases):
            test = example(*case)(test)
        return test
    return wrap


IDS = {"X-User-Id": "sub", "X-User-Roles": "roles"}
ADMIN = {"require": {"roles_any": ["admin"]}, "headers": IDS}
USER = {"require": {"roles_any": ["user"]}, "headers": IDS}


def app_routes(upstream: str) -> list[dict[str, Any]]:
    """The rules in front of the gunicorn, Express and stdlib apps."""
    return [
        {"name": "ws", "prefix": "/ws", "upstream": upstream, "websocket": True, "auth": "optional", "headers": IDS},
        {"name": "api-admin", "prefix": "/api/admin", "upstream": upstream, **ADMIN},
        {"name": "api", "prefix": "/api", "upstream": upstream, **USER},
        {"name": "admin", "prefix": "/admin", "upstream": upstream, **ADMIN},
        {"name": "items-delete", "prefix": "/items", "methods": ["DELETE"], "upstream": upstream, **ADMIN},
        {"name": "items", "prefix": "/items", "methods": ["GET", "POST"], "upstream": upstream, "auth": "optional",
         "headers": IDS},
        {"name": "public", "prefix": "/", "upstream": upstream, "auth": "none"},
    ]


def vhost_routes(upstream: str) -> list[dict[str, Any]]:
    """The rules in front of nginx: an admin-only host route, then a host-less public route, same prefix."""
    return [
        {"name": "whoami", "prefix": "/whoami", "upstream": upstream, "auth": "optional", "headers": IDS},
        {"name": "admin-site", "host": "admin.example.com", "prefix": "/", "upstream": upstream, "preserve_host": True,
         **ADMIN},
        {"name": "site", "prefix": "/", "upstream": upstream, "auth": "none", "preserve_host": True},
    ]


# What each upstream handler needs under those rules: the admin handlers, Express's DELETE /items/:id
# and nginx's admin vhost need role admin; /api handlers a signed-in user; the rest nobody.
NEEDS = {"admin": "admin", "items.delete": "admin", "api": "user", "items.get": None, "items.post": None,
         "public": None, None: None}


@dataclass(frozen=True)
class Caller:
    name: str
    sub: str | None = None
    roles: str | None = None  # X-User-Roles as the gateway injects it
    token: str | None = None

    def may(self, need: str | None) -> bool:
        return need is None or (self.roles is not None and need in self.roles.split(","))


ANONYMOUS = Caller("anonymous")


def auth(caller: Caller) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {caller.token}")] if caller.token else []


def is_gateway_refusal(status: int, body: bytes) -> bool:
    """4xx in the gateway's JSON shape ``{"detail", "code"}``."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return 400 <= status < 500 and isinstance(data, dict) and {"detail", "code"} <= set(data)


def assert_authorised(reply: RawReply, caller: Caller, what: str) -> dict[str, Any] | None:
    """The oracle: refused by the gateway, or answered by a handler this caller may reach, as this caller."""
    context = f"{what} as {caller.name} -> {reply.status} {reply.upstream or 'gateway'}: {reply.body[:400]!r}"
    assert reply.status < 500, context
    if reply.upstream is None:
        assert is_gateway_refusal(reply.status, reply.body), f"neither the gateway's refusal nor an upstream: {context}"
        return None
    if reply.status >= 400 and not reply.headers.get("Content-Type", "").startswith("application/json"):
        return None  # the upstream server itself refused it (nginx's 400 for a bad Host): no handler ran
    seen = reply.json()
    need = NEEDS[seen["handler"]]
    assert caller.may(need), f"privilege escalation: handler {seen['handler']!r} needs {need}: {context}"
    user, roles = seen.get("user") or None, seen.get("roles") or None
    if need is None:
        assert user in (None, caller.sub) and roles in (None, caller.roles), f"identity not the caller's: {context}"
    else:
        assert (user, roles) == (caller.sub, caller.roles), f"identity not the caller's: {context}"
    return seen


def assert_refused(reply: RawReply, what: str, status: int = 400) -> None:
    context = f"{what} -> {reply.status} {reply.upstream or 'gateway'}: {reply.body[:300]!r}"
    assert reply.status == status and reply.upstream is None, f"expected the gateway's {status}: {context}"
    assert is_gateway_refusal(reply.status, reply.body), context


# -- the stack ---------------------------------------------------------------------------------------

LAUNCHERS: dict[str, Callable[..., ServerProcess]] = {
    "gunicorn": gunicorn_flask, "express": express, "stdlib": stdlib_server, "nginx": nginx}


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    started: dict[str, ServerProcess] = {}
    try:
        for name, launch in LAUNCHERS.items():
            started[name] = launch(tmp_path_factory.mktemp(name))
        yield started
    finally:
        for server in started.values():
            server.stop()


@dataclass
class Gateway:
    port: int
    callers: tuple[Caller, Caller, Caller]  # anonymous, bob, alice

    def send(self, method: str, target: str, caller: Caller, headers: Sequence[tuple[str, str]] = (),
             host: str | None = None, auth_first: bool = False) -> RawReply:
        fields = [*auth(caller), *headers] if auth_first else [*headers, *auth(caller)]
        return raw_request(self.port, method, target, fields, host)


@pytest.fixture
def gateway_for(gateway_process, users_file, upstreams) -> Callable[[str], Gateway]:
    """``gateway_for("express")``: a `gateway run` process in front of that upstream, with real tokens."""
    started: dict[str, Gateway] = {}

    def start(name: str) -> Gateway:
        if name not in started:
            url = upstreams[name].url
            port = gateway_process({
                "tokens": {"secret": SECRET, "issuer": "test-gw", "audience": "test-clients"},
                "users_file": str(users_file),
                "routes": vhost_routes(url) if name == "nginx" else app_routes(url),
            })
            started[name] = Gateway(port, (ANONYMOUS, _login(port, "bob", "user"), _login(port, "alice", "admin,user")))
        return started[name]

    return start


def _login(port: int, user: str, roles: str) -> Caller:
    """A real access token from the gateway's /auth/token."""
    with urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/auth/token", json.dumps({"username": user, "password": PASSWORDS[user]}).encode(),
            {"Content-Type": "application/json"}), timeout=15) as resp:
        return Caller(user, user, roles, json.load(resp)["access"])


# -- positive controls: the stack works, so the properties below cannot pass vacuously -------------

def test_positive_controls(gateway_for):
    for name in ("gunicorn", "express", "stdlib"):
        gw = gateway_for(name)
        anonymous, bob, alice = gw.callers
        admin_path = "/api/admin" if name == "stdlib" else "/api/admin/users"
        seen = assert_authorised(gw.send("GET", admin_path, alice), alice, f"{name} GET {admin_path}")
        assert seen and seen["handler"] == "admin" and seen["user"] == "alice", name
        seen = assert_authorised(gw.send("GET", "/api/items/3", bob), bob, f"{name} GET /api/items/3")
        assert seen and seen["handler"] == "api" and (seen["user"], seen["roles"]) == ("bob", "user"), name
        assert_refused(gw.send("GET", admin_path, bob), f"{name}: bob on the admin route", 403)
        assert_refused(gw.send("GET", "/api/items/3", anonymous), f"{name}: anonymous on /api", 401)
    gw = gateway_for("express")
    anonymous, bob, alice = gw.callers
    assert gw.send("POST", "/items/7", anonymous).json()["handler"] == "items.post"
    assert gw.send("DELETE", "/items/7", alice).json()["handler"] == "items.delete"
    assert_refused(gw.send("DELETE", "/items/7", bob), "express: bob's DELETE", 403)
    gw = gateway_for("nginx")
    anonymous, bob, alice = gw.callers
    assert gw.send("GET", "/", anonymous, host="www.example.com").json()["vhost"] == "public"
    seen = gw.send("GET", "/", alice, host="admin.example.com").json()
    assert (seen["vhost"], seen["user"]) == ("admin", "alice")
    assert_refused(gw.send("GET", "/", anonymous, host="admin.example.com"), "anonymous on the admin vhost", 401)
    assert gw.send("GET", "/whoami", bob).json()["user"] == "bob"


# -- header names --------------------------------------------------------------------------------

def _spelling(name: str) -> st.SearchStrategy[str]:
    """``name`` with each letter's case and each ``-`` (``-`` or ``_``) drawn independently."""
    parts = [st.sampled_from(["-", "_"]) if c == "-" else st.sampled_from(sorted({c.lower(), c.upper()})) for c in name]
    return st.tuples(*parts).map("".join)


SPOOF = st.one_of(st.tuples(_spelling("x-user-id"), st.just("root")), st.tuples(_spelling("x-user-roles"), st.just("admin")))


def test_identity_header_spellings_never_reach_the_upstream(gateway_for):
    """``X_User_Id: root`` is HTTP_X_USER_ID to gunicorn 21 and $http_x_user_id to nginx (underscores_in_headers)."""
    targets = [("gunicorn", "/api/items/1"), ("gunicorn", "/items/1"), ("gunicorn", "/public/x"),
               ("gunicorn", "/api/admin/users"), ("nginx", "/whoami"), ("stdlib", "/items/1")]

    @PROPERTY
    @given(st.sampled_from(targets), st.lists(SPOOF, min_size=1, max_size=3), st.booleans())
    @examples((("gunicorn", "/public/x"), [("X_User_Id", "root"), ("X_User_Roles", "admin")], False),
              (("gunicorn", "/api/items/1"), [("X_User_Roles", "admin")], True), (("nginx", "/whoami"), [("X_User_Id", "root")], False))
    def check(target, spoofs, auth_first):
        name, path = target
        gw = gateway_for(name)
        for caller in gw.callers:
            reply = gw.send("GET", path, caller, spoofs, auth_first=auth_first)
            assert_authorised(reply, caller, f"{name} GET {path} with {spoofs}")

    check()


def test_websocket_handshakes_carry_only_the_gateways_identity(gateway_for):
    gw = gateway_for("stdlib")

    @settings(PROPERTY, max_examples=20)
    @given(st.lists(SPOOF, min_size=1, max_size=3))
    def check(spoofs):
        for caller in gw.callers:
            status, body = websocket_handshake(gw.port, "/ws/feed", [*spoofs, *auth(caller)])
            context = f"websocket with {spoofs} as {caller.name} -> {status}: {body[:300]!r}"
            assert status == 101 or is_gateway_refusal(status, body), context
            if status == 101:
                seen = json.loads(body)
                assert (seen["user"], seen["roles"]) == (caller.sub, caller.roles), f"identity not the caller's: {context}"

    check()


AUTHORITATIVE = ["Forwarded", "X-Real-IP", "True-Client-IP", "X-Original-URL", "X-Rewrite-URL", "X-Original-Method",
                 "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "Remote-User", "X-Remote-User"]
OVERRIDES = ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]


def test_method_override_cannot_reach_a_handler_the_method_rules_reserve(gateway_for):
    """Anonymous ``POST /items/7`` + ``X-HTTP-Method-Override: DELETE`` must not run Express's DELETE handler."""
    gw = gateway_for("express")

    @PROPERTY
    @given(st.sampled_from(OVERRIDES).flatmap(lambda n: _spelling(n.lower())),
           st.sampled_from(["DELETE", "delete", "Delete"]), st.sampled_from(["/items/7", "/Items/7", "/admin/users"]))
    def check(header, method, path):
        for caller in gw.callers:
            assert_authorised(gw.send("POST", path, caller, [(header, method)]), caller, f"POST {path} {header}: {method}")

    check()


def test_authoritative_headers_are_stripped_and_forwarded_is_the_gateways(gateway_for):
    gw = gateway_for("gunicorn")
    for caller, path in [(gw.callers[0], "/public/x"), (gw.callers[1], "/api/items/1")]:
        for name in AUTHORITATIVE:
            marker = f"injected-{name.lower()}"
            value = f"for=10.6.6.6;host={marker}" if name == "Forwarded" else marker
            seen = assert_authorised(gw.send("GET", path, caller, [(name, value)]), caller, f"GET {path} {name}")
            assert seen is not None, f"{name}: refused, but stripping is the default"
            leaked = {k: v for k, v in seen["headers"].items() if marker in v}
            assert not leaked, f"{name} from the client reached the upstream: {leaked}"
            assert "for=" in seen["headers"].get("HTTP_FORWARDED", ""), f"the gateway sets Forwarded: {seen['headers']}"


# -- hosts -----------------------------------------------------------------------------------------

def _host_variants(base: str) -> st.SearchStrategy[str]:
    case = st.sampled_from([str.lower, str.upper, str.title, lambda s: s[:3].upper() + s[3:]])
    return st.builds(lambda f, dot, port, tail: f(base) + dot + port + tail, case, st.sampled_from(["", "."]),
                     st.sampled_from(["", ":80", ":443", ":8080"]),
                     st.sampled_from(["", "", "/x", ", evil.example", ",evil", " evil", "/", "?x", "@evil"]))


_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")


def test_host_variants_never_reach_the_admin_vhost_unauthorised(gateway_for):
    """``Host: ADMIN.EXAMPLE.COM.:443`` and friends: nginx lowercases, drops the dot and the port."""
    gw = gateway_for("nginx")

    @PROPERTY
    @given(_host_variants("admin.example.com"), st.sampled_from(["/", "/x", "/admin"]))
    @examples(("admin.example.com.", "/"), ("ADMIN.EXAMPLE.COM.:443", "/"), ("admin.example.com/x", "/"),
              ("admin.example.com, evil", "/"))
    def check(host, path):
        seen = [assert_authorised(gw.send("GET", path, c, host=host), c, f"GET {path} Host: {host!r}") for c in gw.callers]
        for answer in filter(None, seen):  # preserve_host forwards the normalised host
            assert _HOST.match(answer["host"]) and not answer["host"].split(":")[0].endswith("."), (host, answer)
            assert not answer["host"].endswith(":80"), (host, answer)

    check()
    for junk in ["admin.example.com, evil", "a, b", "admin.example.com/x", "admin example.com"]:
        assert_refused(gw.send("GET", "/", ANONYMOUS, host=junk), f"Host: {junk!r}")


def test_check_warns_when_a_host_route_falls_through_to_a_host_less_one(tmp_path, users_file):
    path = tmp_path / "vhosts.yaml"
    path.write_text(yaml.safe_dump({"tokens": {"secret": SECRET}, "users_file": str(users_file),
                                    "routes": vhost_routes("http://127.0.0.1:9")}))
    result = subprocess.run([*gateway_command(), "check", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("admin.example.com" in w and "(site)" in w for w in warnings), result.stderr


def test_forwarded_host_is_the_validated_host(gateway_for):
    gw = gateway_for("gunicorn")

    @PROPERTY
    @given(_host_variants("service.example"), st.sampled_from(["attacker.example", "a, b", "evil:1", ""]))
    def check(host, forwarded_host):
        extra = [("X-Forwarded-Host", forwarded_host)] if forwarded_host else []
        for caller in gw.callers[:2]:
            seen = assert_authorised(gw.send("GET", "/public/x", caller, extra, host=host), caller, f"Host: {host!r}")
            if seen is not None:
                xfh = seen["headers"].get("HTTP_X_FORWARDED_HOST", "")
                assert _HOST.match(xfh) and xfh.startswith("service.example"), f"X-Forwarded-Host {xfh!r} for {host!r}"

    check()


# -- paths -----------------------------------------------------------------------------------------

FULLWIDTH = {".": "%EF%BC%8E", "/": "%EF%BC%8F", "\\": "%EF%BC%BC"}
# Mutations of one segment; the last group are always refused (400) by default.
CASE = {"upper": str.upper, "title": str.title, "swap": lambda s: s[:1].upper() + s[1:]}
SEMICOLON = {"params": lambda s: s + ";x", "jsession": lambda s: s + ";jsessionid=1", "bare": lambda s: s + ";"}
REFUSED = {"dot": lambda s: s + ".", "space": lambda s: s + "%20", "dotdot-2x": lambda s: "%252e%252e/" + s,
           "slash-2x": lambda s: s + "%252fx", "backslash-2x": lambda s: s + "%255cx",
           "fw-dot": lambda s: FULLWIDTH["."] + FULLWIDTH["."] + "/" + s, "fw-slash": lambda s: s + FULLWIDTH["/"] + "x",
           "fw-backslash": lambda s: s + FULLWIDTH["\\"] + "x", **SEMICOLON}
MUTATIONS = {**CASE, **REFUSED}
PATHS = ["/api/admin/users", "/api/admin", "/admin/users", "/api/items/3", "/items/7"]


def mutate(path: str, mutation: str, index: int) -> str:
    segments = path.strip("/").split("/")
    index = min(index, len(segments) - 1)
    segments[index] = MUTATIONS[mutation](segments[index])
    return "/" + "/".join(segments)


def test_path_variants_reach_only_authorised_handlers(gateway_for):
    """``/api/admin;x`` (urlparse), ``/API/admin/users`` (Express), ``/ADMIN/users`` via the public catch-all..."""

    @PROPERTY
    @given(st.sampled_from(["gunicorn", "express", "stdlib"]), st.sampled_from(PATHS), st.sampled_from(sorted(MUTATIONS)),
           st.integers(0, 2), st.sampled_from(["GET", "DELETE"]))
    @examples(("stdlib", "/api/admin", "params", 1, "GET"), ("express", "/api/admin/users", "upper", 1, "GET"),
              ("express", "/admin/users", "upper", 0, "GET"), ("stdlib", "/admin/users", "params", 0, "GET"),
              ("express", "/items/7", "title", 0, "DELETE"))
    def check(upstream, path, mutation, index, method):
        target = mutate(path, mutation, index)
        gw = gateway_for(upstream)
        for caller in gw.callers:
            assert_authorised(gw.send(method, target, caller), caller, f"{upstream} {method} {target}")

    check()


SEGMENT = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~", min_size=1, max_size=8)


def test_ambiguous_path_segments_are_refused_by_default(gateway_for):
    """``;``, a trailing dot or space, ``%25``-escapes of ``.``/``/``/``\\`` and their fullwidth forms: 400."""
    gw = gateway_for("stdlib")

    @PROPERTY
    @given(st.lists(SEGMENT, min_size=1, max_size=4), st.sampled_from(sorted(REFUSED)), st.integers(0, 3))
    def check(segments, mutation, index):
        target = mutate("/" + "/".join(segments), mutation, index)
        for caller in gw.callers[:2]:
            assert_refused(gw.send("GET", target, caller), f"GET {target} ({mutation}) as {caller.name}")

    check()


def test_prefixes_match_whatever_the_case(gateway_for):
    gw = gateway_for("express")
    anonymous, bob, alice = gw.callers
    for target in ["/API/admin/users", "/Api/Admin/users", "/ADMIN/users", "/api/ADMIN/users"]:
        assert_refused(gw.send("GET", target, anonymous), f"anonymous GET {target}", 401)
        assert_refused(gw.send("GET", target, bob), f"bob GET {target}", 403)
        seen = assert_authorised(gw.send("GET", target, alice), alice, f"alice GET {target}")
        assert seen and seen["handler"] == "admin", f"alice GET {target}: {seen}"
