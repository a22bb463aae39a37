"""Access logs: one JSON line per request with the documented fields, and no secret in any log line."""
from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.conftest import PASSWORDS, base_config

FIELDS = {"time", "request_id", "method", "path", "route", "status", "duration_ms", "upstream_ms", "sub", "client",
          "bytes", "pid"}
COOKIES = {"sessionid": "cookie-value-0123456789abcdef", "csrftoken": "csrf-value-fedcba9876543210"}


async def test_full_flow_logs_every_request_and_no_secret(gateway_process, upstream, users_file, redis_url):
    raw = base_config(upstream, users_file, store={"backend": "redis", "url": redis_url})
    port = gateway_process(raw, "--log-level", "DEBUG", "--log-format", "json")
    base = f"http://127.0.0.1:{port}"
    secrets = [*PASSWORDS.values(), "wrong-password-Zq9", *COOKIES.values()]
    sizes: dict[str, int] = {}

    async with aiohttp.ClientSession(cookies=COOKIES) as s:
        async def call(method: str, path: str, rid: str, **kwargs) -> tuple[int, dict]:
            async with s.request(method, base + path, headers={"X-Request-Id": rid, **kwargs.pop("headers", {})},
                                 **kwargs) as resp:
                body = await resp.read()
                sizes[rid] = len(body)
                return resp.status, json.loads(body) if body else {}

        status, alice = await call("POST", "/auth/token", "login-json",
                                   json={"username": "alice", "password": PASSWORDS["alice"]})
        assert status == 200
        status, bob = await call("POST", "/auth/token?password=" + PASSWORDS["bob"], "login-form",
                                 data={"username": "bob", "password": PASSWORDS["bob"]})
        assert status == 200
        status, _ = await call("POST", "/auth/token", "login-bad", json={"username": "alice", "password": "wrong-password-Zq9"})
        assert status == 401
        auth = {"Authorization": f"Bearer {alice['access']}"}
        query = f"?access_token={alice['access']}&refresh={alice['refresh']}&q=1"
        status, echoed = await call("GET", "/api/items" + query, "proxied", headers=auth)
        assert status == 200 and echoed["headers"]["Cookie"]  # the cookies really went through
        status, _ = await call("GET", "/maybe/x", "garbled", headers={"Authorization": f"Bearer {alice['access']}x"})
        assert status == 401
        status, _ = await call("POST", "/auth/token/verify", "verify", json={"token": alice["access"]})
        assert status == 200
        status, _ = await call("GET", "/auth/me", "me", headers=auth)
        assert status == 200
        status, fresh = await call("POST", "/auth/token/refresh", "refresh", json={"refresh": alice["refresh"]})
        assert status == 200
        status, _ = await call("POST", "/auth/logout", "logout", json={"refresh": fresh["refresh"]},
                               headers={"Authorization": f"Bearer {fresh['access']}"})
        assert status == 200
        status, _ = await call("GET", "/nowhere" + query, "unmatched", headers=auth)
        assert status == 404

    for pair in (alice, bob, fresh):
        for token in (pair["access"], pair["refresh"]):
            header, payload, signature = token.split(".")
            secrets += [token, payload, signature]

    log = gateway_process.log(port)
    leaks = [(s, line) for line in log.splitlines() for s in secrets if s in line]
    assert not leaks, leaks[:3]

    records = [json.loads(line) for line in log.splitlines()]  # every line is JSON with --log-format json
    access = {r["request_id"]: r for r in records if "request_id" in r}
    assert set(access) == set(sizes)  # one line per request
    for rid, record in access.items():
        assert FIELDS <= set(record), rid
        assert record["bytes"] == sizes[rid], rid
        assert "?" not in record["path"]
    proxied = access["proxied"]
    assert (proxied["route"], proxied["sub"], proxied["status"], proxied["client"]) == ("api", "alice", 200, "127.0.0.1")
    assert proxied["upstream_ms"] is not None and proxied["duration_ms"] >= proxied["upstream_ms"]
    assert access["login-bad"]["code"] == "invalid_credentials" and access["login-bad"]["route"] == "@/auth/token"
    assert access["unmatched"]["route"] is None and access["unmatched"]["upstream_ms"] is None
    assert [access[r]["sub"] for r in ("login-json", "login-form", "login-bad", "me", "refresh")] == [
        "alice", "bob", None, "alice", "alice"]
    others = [r for r in records if "request_id" not in r]
    assert others and all({"time", "level", "logger", "message"} <= set(r) for r in others)


async def test_malformed_requests_are_logged_without_their_bytes(gateway_process, upstream, users_file):
    """aiohttp's parser errors quote the bad line; a Cookie or a query string must not reach the log that way."""
    port = gateway_process(base_config(upstream, users_file), "--log-level", "DEBUG")
    requests = [
        b"GET /public/x?access_token=SECRET-QUERY-1 HTTP/1.1\r\nHost: x\r\nCookie: s=SECRET-COOKIE\x01x\r\n\r\n",
        b"GET /public/x?access_token=SECRET-QUERY-2 HTTP/1.1\r\nHost: x\r\nBad Header: SECRET-HEADER\r\n\r\n",
        b"FROB /public/x?access_token=SECRET-QUERY-3 HTTP/1.1\r\n\r\n",
    ]
    for raw in requests:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        assert (await asyncio.wait_for(reader.read(12), 10)).startswith(b"HTTP/1.")
        writer.close()
    await asyncio.sleep(0.2)
    log = gateway_process.log(port)
    assert log.count("rejected a malformed HTTP request from 127.0.0.1") == 3
    assert "SECRET" not in log and "Traceback" not in log
