"""The upstream trust boundary, gateway side: header names, authoritative headers, hosts, framing,
secure defaults and bad input. (tests/ops/test_upstream_trust.py runs the same classes against real
third-party upstream servers.)"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, load_config, parse_config
from gateway.config.boundary import AUTHORITATIVE_HEADERS
from gateway.upstream.headers import encode_claim
from tests.conftest import ROOT, SECRET, base_config, bearer, gateway_command, login

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")


async def seen(gateway, path: str = "/api/x", **kw) -> dict:
    resp = await gateway.get(path, **kw)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["headers"]


async def test_underscored_and_case_folded_identity_headers_never_reach_the_upstream(gateway):
    token = (await login(gateway, "bob"))["access"]
    spoofs = {"X_User_Id": "root", "x_user_roles": "admin", "X-USER_ROLES": "admin", "X_Custom": "kept?",
              "X.User.Id": "root", "x.user-roles": "admin", "X.Custom": "kept?"}
    for path, headers in (("/public/x", spoofs), ("/api/x", {**spoofs, **bearer(token)})):
        got = await seen(gateway, path, headers=headers)
        lowered = {k.lower().replace("_", "-"): v for k, v in got.items()}
        assert "root" not in got.values() and "admin" not in lowered.get("x-user-roles", "")
        assert not any("_" in name or "." in name for name in got), got  # nginx's default: no such names at all
    assert got["X-User-Id"] == "bob" and got["X-User-Roles"] == "user"


async def test_underscores_may_be_allowed_but_identity_names_are_still_folded(make_gateway):
    gateway = await make_gateway(client_headers={"allow_underscores": True})
    got = await seen(gateway, "/public/x", headers={"X_User_Id": "root", "X.User.Id": "root", "X_Custom": "kept"})
    assert got.get("X_Custom") == "kept" and "X_User_Id" not in got and "X.User.Id" not in got


async def test_authoritative_headers_are_stripped_and_forwarded_is_the_gateways(gateway):
    sent = {name: "spoofed" for name in AUTHORITATIVE_HEADERS}
    sent["X_HTTP_Method_Override"] = "DELETE"
    got = await seen(gateway, "/public/x", headers=sent)
    assert "spoofed" not in got.values() and "DELETE" not in got.values()
    assert got["Forwarded"].startswith("for=127.0.0.1;host=") and got["Forwarded"].endswith(";proto=http")


async def test_auth_proxy_identities_are_stripped_even_from_trusted_proxies(make_gateway):
    trusting = await make_gateway(trust_forwarded_headers=True)
    sent = {"X-Forwarded-User": "admin", "X-Forwarded-Email": "admin@corp", "X_Forwarded_Groups": "admins",
            "X-Forwarded-Prefix": "/app"}
    got = await seen(trusting, "/public/x", headers=sent)
    assert got.get("X-Forwarded-Prefix") == "/app"  # other forwarding headers of a trusted proxy pass
    assert not {"admin", "admin@corp", "admins"} & set(got.values())


async def test_the_strip_list_is_configurable(make_gateway):
    gateway = await make_gateway(client_headers={"strip": ["X-Tenant-Override"], "keep": ["X-Real-IP"]})
    got = await seen(gateway, "/public/x", headers={"X-Tenant-Override": "a", "X-Real-IP": "10.0.0.1", "True-Client-IP": "1"})
    assert "X-Tenant-Override" not in got and got["X-Real-IP"] == "10.0.0.1" and "True-Client-IP" not in got
    with pytest.raises(ConfigError, match="nothing to keep"):
        parse_config(base_config("http://u", Path("u.yaml"), client_headers={"keep": ["X-Anything"]}), Path("."))


async def test_forwarded_host_is_only_ever_a_validated_host(make_gateway, gateway):
    got = await seen(gateway, "/public/x", headers={"X-Forwarded-Host": "attacker.example", "Host": "Gw.Example.:80"})
    assert got["X-Forwarded-Host"] == "gw.example"
    trusting = await make_gateway(trust_forwarded_headers=True)
    got = await seen(trusting, "/public/x", headers={"X-Forwarded-Host": "Shop.Example.", "X-Forwarded-Proto": "https"})
    assert got["X-Forwarded-Host"] == "shop.example" and got["X-Forwarded-Proto"] == "https"
    for bad in ({"X-Forwarded-Host": "a, b"}, {"X-Forwarded-Host": "a/x"}, {"X-Forwarded-Proto": "javascript"}):
        resp = await trusting.get("/public/x", headers=bad)
        assert resp.status == 400 and (await resp.json())["code"] == "bad_request"


@pytest.mark.parametrize("host", ["admin.example.com/x", "admin.example.com, evil", "a b", "x:99999", "[::1"])
async def test_an_invalid_host_is_a_400(gateway, host):
    resp = await gateway.get("/public/x", headers={"Host": host})
    assert resp.status == 400 and (await resp.json())["code"] == "bad_request"


async def test_host_routes_match_every_spelling_of_their_host(make_gateway, upstream):
    routes = [{"name": "admin-site", "prefix": "/", "host": "Admin.Example.com.", "upstream": upstream,
               "require": {"roles_any": ["admin"]}, "preserve_host": True},
              {"name": "site", "prefix": "/", "upstream": upstream, "auth": "none", "preserve_host": True}]
    gateway = await make_gateway(routes=routes)
    for host in ("admin.example.com", "ADMIN.EXAMPLE.COM.:443", "admin.example.com.", "Admin.example.com:80"):
        resp = await gateway.get("/x", headers={"Host": host})
        assert resp.status == 401, host
    token = (await login(gateway))["access"]
    got = await seen(gateway, "/x", headers={"Host": "ADMIN.EXAMPLE.COM.", **bearer(token)})
    assert got["Host"] == "admin.example.com"  # the upstream's vhost sees the host that was matched


@pytest.mark.parametrize("target", [
    "/public%3F/x", "/public%3f/x", "/public%23/x", "/public/x%23y", "/public/x%3Fy", "/admin%3F/users",
    "/api/x%3f", "/api%23",
])
async def test_an_encoded_query_or_fragment_delimiter_in_the_path_is_a_400(gateway, target):
    # A hop that decodes once would read /public%3F/x as /public (the rest a query string).
    token = (await login(gateway, "bob"))["access"]
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"code": "bad_request"' in answer and b"Traceback" not in answer


async def test_only_chunked_is_accepted_as_transfer_coding(gateway):
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(b"POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 400") and b'"bad_request"' in head


async def test_metrics_on_the_main_listener_answer_loopback_callers_only(make_gateway):
    gateway = await make_gateway()
    assert (await gateway.get("/metrics")).status == 200
    assert (await gateway.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})).status == 404
    assert (await gateway.get("/metrics", headers={"Forwarded": "for=203.0.113.9"})).status == 404
    public = await make_gateway(metrics={"public": True})
    assert (await public.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})).status == 200


async def test_discovery_without_public_url_is_for_loopback_only(make_gateway):
    gateway = await make_gateway()
    resp = await gateway.get("/.well-known/openid-configuration", headers={"Host": "evil.example"})
    assert resp.status == 404 and (await resp.json())["code"] == "not_configured"
    resp = await gateway.get("/.well-known/openid-configuration", headers={"Host": "localhost:8080"})
    assert (await resp.json())["jwks_uri"] == "http://localhost:8080/.well-known/jwks.json"
    configured = await make_gateway(public_url="https://gw.example")
    resp = await configured.get("/.well-known/openid-configuration", headers={"Host": "evil.example"})
    assert (await resp.json())["jwks_uri"] == "https://gw.example/.well-known/jwks.json"


def test_the_docs_example_secret_is_refused_off_loopback(users_file, tmp_path):
    raw = base_config("http://u", users_file, tokens={"secret": "dev-only-secret-change-me-0123456789abcdef"})
    with pytest.raises(ConfigError, match="example secret from the docs.*GATEWAY_SECRET"):
        parse_config({**raw, "listen": {"host": "0.0.0.0"}}, tmp_path)
    parse_config({**raw, "listen": {"host": "127.0.0.1"}}, tmp_path)
    parse_config({**raw, "listen": {"host": "0.0.0.0"}, "development": True}, tmp_path)
    parse_config({**raw, "listen": {"host": "0.0.0.0"}, "tokens": {"secret": SECRET}}, tmp_path)


@pytest.mark.parametrize(
    "text, line",
    [
        ("routes:\n  - prefix: /x\n    upstream: http://u\n    auth: required\n    auth: none\n", 5),
        ("routes: []\nusers_file: u.yaml\nroutes: []\n", 3),
    ],
)
def test_duplicate_yaml_keys_are_a_configuration_error(tmp_path, text, line):
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:{line}:" in str(info.value) and "duplicate key" in str(info.value)


async def test_verify_treats_a_spent_refresh_token_as_reuse(make_gateway):
    gateway = await make_gateway(tokens={"refresh_grace": "0s"})
    first = await login(gateway)
    rotated = await (await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})).json()
    resp = await gateway.post("/auth/token/verify", json={"token": first["refresh"]})
    assert resp.status == 401 and (await resp.json())["code"] == "token_reused"
    resp = await gateway.post("/auth/token/refresh", json={"refresh": rotated["refresh"]})
    assert resp.status == 401  # the whole session is revoked, as after a reuse at refresh


async def test_verify_within_the_grace_window_is_not_reuse(make_gateway):
    gateway = await make_gateway(tokens={"refresh_grace": "30s"})
    first = await login(gateway)
    rotated = await (await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})).json()
    assert (await gateway.post("/auth/token/verify", json={"token": first["refresh"]})).status == 401
    assert (await gateway.post("/auth/token/refresh", json={"refresh": rotated["refresh"]})).status == 200


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), boundary=st.sampled_from(["b", "x-y", "\"q\""]))
async def test_no_form_body_causes_a_server_error(gateway, body, boundary):
    for ctype in (f"multipart/form-data; boundary={boundary}", "application/x-www-form-urlencoded"):
        resp = await gateway.post("/auth/token", data=b"--b\r\n" + body, headers={"Content-Type": ctype})
        assert resp.status < 500, await resp.text()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
))
def test_any_claim_value_becomes_one_safe_header_value(value):
    encoded = encode_claim(value)
    assert encoded.isascii() and all(0x20 <= ord(c) < 0x7F for c in encoded)


def test_protocol_errors_are_json_without_request_bytes_or_versions(gateway_process, users_file, upstream):
    port = gateway_process(base_config(upstream, users_file))
    for request in (b"GET /api/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer eyJsecret.token\r\nbad header eyJsecret\r\n\r\n",
                    b"GET /api/x HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 9000 + b"eyJsecret\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1][:1] == b"4" and b"application/json" in head, answer[:300]
        assert b"eyJ" not in answer and b"aiohttp" not in answer.lower() and b"Python" not in answer
        assert b'"code"' in body and b"Server: gateway" in head
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        assert b"Server: gateway\r\n" in conn.recv(65536)


def test_reload_never_signals_a_process_that_is_not_a_gateway(tmp_path):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = tmp_path / "stale.pid"
        pid_file.write_text(f"{victim.pid}\n")
        done = subprocess.run([*gateway_command(), "reload", "--pid-file", str(pid_file)], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 1 and "not a running gateway" in done.stderr
        assert victim.poll() is None  # still alive: SIGHUP would have ended it
    finally:
        victim.kill()
        victim.wait(5)


def test_check_warns_about_host_routes_that_fall_through(tmp_path, users_file):
    raw = base_config("http://u:1", users_file, routes=[
        {"name": "admin-site", "prefix": "/", "host": "admin.example.com", "upstream": "http://u:1",
         "require": {"roles_any": ["admin"]}},
        {"name": "site", "prefix": "/", "upstream": "http://u:2", "auth": "none"},
    ])
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = subprocess.run([*gateway_command(), "check", str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={**os.environ})
    assert done.returncode == 0 and "routes[1] (site): serves / for every host but admin.example.com" in done.stderr
