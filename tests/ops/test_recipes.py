"""Issue 14, upstreams that trust the gateway: every recipe of docs/recipes.md, run for real.

Each framework's app (tests/upstreams/recipes/) runs on its own server behind a real `gateway run`
process with an ES256 key: Django (RemoteUserMiddleware subclasses, on runserver), Django REST framework
(authentication classes), Flask (decorators,
on gunicorn), FastAPI (dependencies, on uvicorn), Express (a jose middleware) and nginx + PHP-FPM.
Each test shows that the gateway's user arrives, that a spoofed header from the client does not, and
that the upstream itself refuses a forged, expired (replayed) or foreign-audience identity token sent
straight to it. Every app answers with the user it resolved.
"""
from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import PASSWORDS, ROOT
from tests.support.jwt_tools import KeyFiles, b64, make_key, sign
from tests.support.processes import (
    RECIPES,
    GatewayProcesses,
    ServerProcess,
    django_recipe,
    express_recipe,
    fastapi_recipe,
    flask_recipe,
    free_port,
    nginx_php,
    php_fpm,
    raw_request,
)

ISSUER = "recipes-gw"
AUDIENCE = "recipe-service"  # identity_jwt.audience of the /signed route


@dataclass
class Stack:
    gateway: int  # the gateway's port
    signed: int  # the port of the upstream that verifies X-Gateway-Identity
    key: KeyFiles  # the gateway's signing key: the test can mint what a thief would replay

    def token(self, user: str = "alice") -> str:
        body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.gateway}/auth/token", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=20) as resp:
            return str(json.load(resp)["access"])


def gateway_config(key: KeyFiles, users_file: Path, plain: str, signed: str) -> dict[str, Any]:
    return {
        "tokens": {"issuer": ISSUER, "audience": "recipe-clients", "leeway": "0s", "keys": [key.spec(active=True)]},
        "users_file": str(users_file),
        "routes": [
            {"name": "plain", "prefix": "/plain", "upstream": plain, "headers": {"X-User-Id": "sub"}},
            {"name": "signed", "prefix": "/signed", "upstream": signed, "identity_jwt": {"audience": AUDIENCE}},
            # the same upstream as another service: a genuine identity token, for another audience
            {"name": "other", "prefix": "/other", "upstream": signed, "strip_prefix": True,
             "identity_jwt": {"audience": "another-service"}},
            {"name": "public", "prefix": "/public", "upstream": plain, "strip_prefix": True, "auth": "none"},
        ],
    }


Launch = Callable[[Path, dict[str, str], int, int], list[ServerProcess]]  # (tmp, env, plain port, signed port)

FRAMEWORKS: dict[str, Launch] = {
    "django": lambda tmp, env, plain, signed: [django_recipe(tmp, "header", env, plain),
                                               django_recipe(tmp, "signed", env, signed)],
    "drf": lambda tmp, env, plain, signed: [django_recipe(tmp, "drf-header", env, plain),
                                            django_recipe(tmp, "drf-signed", env, signed)],
    "flask": lambda tmp, env, plain, _: [flask_recipe(tmp, env, plain)],
    "fastapi": lambda tmp, env, plain, _: [fastapi_recipe(tmp, env, plain)],
    "express": lambda tmp, env, plain, _: [express_recipe(tmp, env, plain)],
}
SEPARATE_SIGNED = {"django", "drf"}  # Django's middleware and DRF's classes are per project: one process per variant


@pytest.fixture(scope="module", params=sorted(FRAMEWORKS))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[Stack]:
    """The gateway first (pointing at free ports), then the framework's app(s) on those ports, told the JWKS URL."""
    tmp = tmp_path_factory.mktemp(request.param)
    key = make_key(tmp / "keys", "ES256", "recipes-es")
    plain = free_port()
    signed = free_port() if request.param in SEPARATE_SIGNED else plain
    gateways = GatewayProcesses(tmp)
    servers: list[ServerProcess] = []
    try:
        port = gateways(gateway_config(key, users_file, f"http://127.0.0.1:{plain}", f"http://127.0.0.1:{signed}"))
        env = {"GATEWAY_JWKS_URL": f"http://127.0.0.1:{port}/.well-known/jwks.json", "GATEWAY_ISSUER": ISSUER,
               "GATEWAY_AUDIENCE": AUDIENCE}
        servers = FRAMEWORKS[request.param](tmp, env, plain, signed)
        yield Stack(port, signed, key)
    finally:
        for server in servers:
            server.stop()
        gateways.stop_all()


def get(port: int, target: str, fields: list[tuple[str, str]]) -> tuple[int, Any]:
    reply = raw_request(port, "GET", target, fields)
    try:
        return reply.status, reply.json()
    except ValueError:
        return reply.status, reply.body.decode(errors="replace")


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def test_the_gateways_user_arrives(stack: Stack) -> None:
    for user in ("alice", "bob"):
        token = stack.token(user)
        assert get(stack.gateway, "/plain/whoami", bearer(token))[1]["user"] == user
        status, body = get(stack.gateway, "/signed/whoami", bearer(token))
        assert status == 200 and body["user"] == user, body
    assert get(stack.gateway, "/plain/whoami", [])[0] == 401  # the gateway's own refusal: no token


def test_a_spoofed_header_from_the_client_does_not_arrive(stack: Stack, tmp_path: Path) -> None:
    token = stack.token("bob")
    spoof = [("X-User-Id", "root"), ("X_User_Id", "root"), ("x-user-id", "root"), ("Remote-User", "root")]
    assert get(stack.gateway, "/plain/whoami", bearer(token) + spoof)[1]["user"] == "bob"
    # a public route injects no identity: the client's X-User-Id is stripped, so the upstream has nobody
    status, body = get(stack.gateway, "/public/plain/whoami", spoof)
    assert status == 401 or body.get("user") is None, body
    forged = sign(make_key(tmp_path / "forger", "ES256", stack.key.kid, material="forger"), claims("root"))
    status, body = get(stack.gateway, "/signed/whoami", bearer(token) + [("X-Gateway-Identity", forged)])
    assert status == 200 and body["user"] == "bob", body


def claims(sub: str, lifetime: int = 60, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now, "exp": now + lifetime,
            "jti": f"j{now}", "token_type": "identity", "idp": ISSUER, **extra}


def test_the_upstream_itself_refuses_forged_and_replayed_identities(stack: Stack, tmp_path: Path) -> None:
    """Straight to the upstream, around the gateway: only a genuine, current token for this audience passes."""
    def direct(token: str | None) -> tuple[int, Any]:
        return get(stack.signed, "/signed/whoami", [("X-Gateway-Identity", token)] if token is not None else [])

    forger = make_key(tmp_path / "forger", "ES256", stack.key.kid, material="forger")  # same kid, other key
    assert direct(sign(stack.key, claims("carol")))[1]["user"] == "carol"  # the control: the real key, all right
    refused = {
        "missing": None,
        "garbage": "not-a-jwt",
        "forged signature": sign(forger, claims("root")),
        "alg none": f"{b64(json.dumps({'alg': 'none', 'kid': stack.key.kid}))}.{b64(json.dumps(claims('root')))}.",
        "expired (a replayed token)": sign(stack.key, claims("alice", lifetime=-5, iat=int(time.time()) - 65)),
        "another audience": sign(stack.key, claims("alice", aud="another-service")),
        "another issuer": sign(stack.key, claims("alice", iss="someone-else")),
        "not an identity token": sign(stack.key, claims("alice", token_type="access")),
        "an external IdP's user": sign(stack.key, claims("kc:alice", idp="keycloak")),
    }
    for what, token in refused.items():
        status, body = direct(token)
        assert status in (401, 403), f"{what}: {status} {body}"
    # a genuine token the gateway minted for another service, replayed here: the upstream refuses it
    status, body = get(stack.gateway, "/other/signed/whoami", bearer(stack.token("alice")))
    assert status in (401, 403) and not (isinstance(body, dict) and "code" in body), body  # the upstream's, not the gateway's


# -- nginx + PHP-FPM: only the gateway's header, only from the gateway -----------------------------

@pytest.fixture(scope="module")
def php_stack(tmp_path_factory: pytest.TempPathFactory, users_file: Path) -> Iterator[tuple[Stack, int]]:
    tmp = tmp_path_factory.mktemp("php")
    key = make_key(tmp / "keys", "ES256", "recipes-es")
    port = free_port()
    gateways = GatewayProcesses(tmp)
    servers: list[ServerProcess] = []
    try:
        gateway = gateways(gateway_config(key, users_file, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}"))
        servers.append(php_fpm(tmp))
        servers.append(nginx_php(tmp, servers[0].port, port))
        yield Stack(gateway, port, key), port
    finally:
        for server in reversed(servers):
            server.stop()
        gateways.stop_all()


def from_address(source: str, port: int, fields: list[tuple[str, str]]) -> int:
    """A request to 127.0.0.1:``port`` from another loopback address: a host that is not the gateway."""
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    with socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0)) as sock:
        sock.sendall(f"GET /whoami HTTP/1.1\r\nHost: app\r\n{head}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    assert match, data[:200]
    return int(match.group(1))


def test_php_behind_nginx_believes_only_the_gateway(php_stack: tuple[Stack, int]) -> None:
    stack, nginx_port = php_stack
    token = stack.token("alice")
    status, body = get(stack.gateway, "/plain/whoami", bearer(token))
    assert status == 200 and body["user"] == "alice" and body["http_x_user_id"] is None, body
    spoof = [("X-User-Id", "root"), ("X_User_Id", "root"), ("Remote-User", "root")]
    assert get(stack.gateway, "/plain/whoami", bearer(stack.token("bob")) + spoof)[1]["user"] == "bob"
    status, body = get(stack.gateway, "/public/whoami", spoof)
    assert status == 200 and body["user"] is None and body["http_x_user_id"] is None, body
    # straight to nginx: an underscored name is dropped by nginx itself (underscores_in_headers off) ...
    status, body = get(nginx_port, "/whoami", [("X_User_Id", "root")])
    assert status == 200 and body["user"] is None, body
    # ... and any host but the gateway's address is refused before PHP runs
    assert from_address("127.0.0.2", nginx_port, [("X-User-Id", "root")]) == 403


def test_the_recipes_verify_with_the_documented_snippet() -> None:
    """tests/upstreams/recipes/gateway_identity.py is the snippet of docs/upstreams.md, verbatim."""
    docs = (ROOT / "docs" / "upstreams.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- upstream-verify -->\s*```python\n(.*?)```", docs, re.S)
    assert match, "docs/upstreams.md lost its upstream verification snippet"
    assert match.group(1) in (RECIPES / "gateway_identity.py").read_text(encoding="utf-8")


def test_the_documented_recipes_are_the_tested_code() -> None:
    """Every code block of docs/recipes.md after `<!-- recipe: PATH -->` is a verbatim part of PATH."""
    docs = (ROOT / "docs" / "recipes.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- recipe: (\S+) -->\n```\w*\n(.*?)\n```", docs, re.S)
    assert {path for path, _ in blocks} >= {
        "tests/upstreams/recipes/django_recipe/middleware.py", "tests/upstreams/recipes/django_recipe/drf.py",
        "tests/upstreams/recipes/flask_recipe.py", "tests/upstreams/recipes/fastapi_recipe.py",
        "tests/upstreams/recipes/express/server.mjs", "tests/upstreams/recipes/php/nginx.conf.template"}
    for path, code in blocks:
        assert code in (ROOT / path).read_text(encoding="utf-8"), f"docs/recipes.md differs from {path}:\n{code}"
