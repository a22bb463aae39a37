"""trusted_proxies: forwarding headers believed from listed peers only, the real client counted, and
refresh/logout never lost to a per-address cap. Real requests from distinct loopback peers:
127.0.0.2 plays the load balancer, 127.0.0.3 a client reaching the gateway directly."""
from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any

import aiohttp
import pytest
import yaml
from multidict import CIMultiDict

from gateway.config import ConfigError, parse_config
from tests.conftest import PASSWORDS, ROOT, base_config, gateway_command
from tests.support.sockets import stalled_upload

PROXY = "127.0.0.2"
DIRECT = "127.0.0.3"
BOUND = aiohttp.ClientTimeout(total=20)


def peer(source: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0), force_close=True), timeout=BOUND)


async def call(gateway, source: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with peer(source) as session:
        async with session.request(method, f"http://127.0.0.1:{gateway.port}{path}", **kw) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body


async def upstream_saw(gateway, source: str, headers: dict[str, str]) -> CIMultiDict[str]:
    status, body = await call(gateway, source, "GET", "/public/x", headers=headers)
    assert status == 200, body
    return CIMultiDict(body["headers"])


async def test_forwarding_headers_count_only_from_a_listed_proxy(make_gateway):
    gateway = await make_gateway(trusted_proxies=["127.0.0.2/32"])
    sent = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example",
            "X-Forwarded-Prefix": "/app"}
    # the load balancer's chain is kept, its peer appended; its proto and host are what the client used
    seen = await upstream_saw(gateway, PROXY, sent)
    assert seen["X-Forwarded-For"] == "6.6.6.6, 203.0.113.7, 127.0.0.2"
    assert (seen["X-Forwarded-Proto"], seen["X-Forwarded-Host"], seen["X-Forwarded-Prefix"]) == ("https", "app.example", "/app")
    assert seen["Forwarded"] == 'for=127.0.0.2;host="app.example";proto=https'
    # the same headers from any other peer are the client's own inventions
    seen = await upstream_saw(gateway, DIRECT, sent)
    assert seen["X-Forwarded-For"] == "127.0.0.3" and seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] != "app.example" and "X-Forwarded-Prefix" not in seen
    assert seen["Forwarded"].startswith("for=127.0.0.3;")
    # a trusted proxy's Forwarded chain is kept as well, anyone else's replaced
    seen = await upstream_saw(gateway, PROXY, {"Forwarded": "for=203.0.113.7;proto=https"})
    assert seen["Forwarded"].startswith("for=203.0.113.7;proto=https, for=127.0.0.2;")
    seen = await upstream_saw(gateway, DIRECT, {"Forwarded": "for=203.0.113.7"})
    assert "203.0.113.7" not in seen["Forwarded"]


def ip_limited(upstream: str) -> list[dict[str, Any]]:
    return [{"name": "limited", "prefix": "/limited", "upstream": upstream, "auth": "none",
             "rate_limit": {"requests": 1, "per": "1m", "key": "ip"}},
            {"name": "public", "prefix": "/public", "upstream": upstream, "auth": "none", "strip_prefix": True}]


async def test_rate_limits_count_the_client_behind_the_proxies(make_gateway, upstream):
    # two tiers of load balancers: 127.0.0.2 in front of the gateway, 10.0.0.0/8 in front of it
    gateway = await make_gateway(trusted_proxies=["127.0.0.2", "10.0.0.0/8"], routes=ip_limited(upstream))

    async def limited(source: str, chain: str | None = None) -> int:
        headers = {"X-Forwarded-For": chain} if chain is not None else {}
        return (await call(gateway, source, "GET", "/limited/x", headers=headers))[0]

    # the client is the rightmost hop no trusted proxy vouches for; forged entries left of it do not matter
    assert await limited(PROXY, "198.51.100.1, 203.0.113.7, 10.1.2.3") == 200
    assert await limited(PROXY, "6.6.6.6, 203.0.113.7, 10.9.9.9") == 429
    assert await limited(PROXY, "203.0.113.7") == 429
    # another client through the same proxies has its own budget
    assert await limited(PROXY, "203.0.113.8, 10.1.2.3") == 200
    assert await limited(PROXY, "[2001:db8::1]:4711") == 200  # an address with a port, as some proxies write it
    # a direct client cannot borrow other addresses' budgets by sending X-Forwarded-For
    assert await limited(DIRECT, "192.0.2.1") == 200
    assert await limited(DIRECT, "192.0.2.2") == 429
    # a proxy without a chain is its own client; an unreadable hop ends the walk at the proxy that reported it
    assert await limited(PROXY) == 200
    assert await limited(PROXY, "garbage") == 429


async def test_forwarded_for_is_read_when_there_is_no_x_forwarded_for(make_gateway, upstream):
    gateway = await make_gateway(trusted_proxies=["127.0.0.2"], routes=ip_limited(upstream))
    forwarded = {"Forwarded": 'for=6.6.6.6, for="[2001:db8::7]:443";proto=https'}
    assert (await call(gateway, PROXY, "GET", "/limited/x", headers=forwarded))[0] == 200
    assert (await call(gateway, PROXY, "GET", "/limited/x", headers={"X-Forwarded-For": "2001:db8::7"}))[0] == 429


async def test_login_throttle_counts_the_client_behind_a_trusted_proxy(make_gateway):
    gateway = await make_gateway(trusted_proxies=["127.0.0.2"], login_throttle={"per_user": 100, "per_ip": 2})

    async def attempt(source: str, user: str, client: str) -> int:
        body = {"username": user, "password": "wrong-password"}
        return (await call(gateway, source, "POST", "/auth/token", json=body, headers={"X-Forwarded-For": client}))[0]

    assert [await attempt(PROXY, f"u{i}", "203.0.113.7") for i in range(3)] == [401, 401, 429]
    assert await attempt(PROXY, "u9", "203.0.113.8") == 401  # everyone else behind the load balancer still logs in
    # a direct peer's X-Forwarded-For is ignored: its guesses count against its own address
    assert [await attempt(DIRECT, f"v{i}", f"198.51.100.{i}") for i in range(3)] == [401, 401, 429]


async def test_trust_forwarded_headers_without_a_list_still_means_every_peer_one_hop(make_gateway, upstream):
    gateway = await make_gateway(trust_forwarded_headers=True, routes=ip_limited(upstream))
    seen = await upstream_saw(gateway, DIRECT, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    assert seen["X-Forwarded-For"] == "203.0.113.7, 127.0.0.3" and seen["X-Forwarded-Proto"] == "https"
    assert (await call(gateway, DIRECT, "GET", "/limited/x", headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.7"}))[0] == 200
    assert (await call(gateway, PROXY, "GET", "/limited/x", headers={"X-Forwarded-For": "203.0.113.7"}))[0] == 429


async def test_a_list_narrows_trust_forwarded_headers(make_gateway):
    gateway = await make_gateway(trust_forwarded_headers=True, trusted_proxies=["127.0.0.2"])
    seen = await upstream_saw(gateway, DIRECT, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    assert seen["X-Forwarded-For"] == "127.0.0.3" and seen["X-Forwarded-Proto"] == "http"


async def test_refresh_and_logout_are_never_lost_to_the_per_address_request_cap(make_gateway):
    gateway = await make_gateway(limits={"max_requests_per_client": 2, "body_idle_timeout": "30s"})
    status, tokens = await call(gateway, DIRECT, "POST", "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]})
    assert status == 200
    # the address's two requests in progress are taken (a crowd behind one NAT, or an attacker on it)
    held = [await stalled_upload(gateway.port, DIRECT) for _ in range(2)]
    try:
        async def capped() -> bool:
            return (await call(gateway, DIRECT, "GET", "/public/x"))[0] == 429

        for _ in range(50):
            if await capped():
                break
            await asyncio.sleep(0.1)
        assert await capped()
        status, fresh = await call(gateway, DIRECT, "POST", "/auth/token/refresh", json={"refresh": tokens["refresh"]})
        assert status == 200, fresh
        status, body = await call(gateway, DIRECT, "POST", "/auth/logout", json={"refresh": fresh["refresh"]})
        assert status in (200, 204), body
        # logins and everything else stay capped
        status, body = await call(gateway, DIRECT, "POST", "/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert (status, body["code"]) == (429, "too_many_requests")
    finally:
        for _, writer in held:
            writer.close()


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "not-an-address", "10.0.0.0/33", ""])
def test_trusted_proxies_must_be_networks(users_file, upstream, tmp_path, entry):
    with pytest.raises(ConfigError) as info:
        parse_config(base_config(upstream, users_file, trusted_proxies=[entry]), tmp_path)
    assert "trusted_proxies" in str(info.value)


@pytest.mark.parametrize("settings,warned", [
    ({"trust_forwarded_headers": True}, True),
    ({"trust_forwarded_headers": True, "trusted_proxies": ["10.0.0.0/8"]}, False),
    ({"trusted_proxies": ["10.0.0.0/8"]}, False),
])
def test_check_warns_when_every_peer_is_trusted(tmp_path, users_file, settings, warned):
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(base_config("http://u:1", users_file, **settings)))
    done = subprocess.run([*gateway_command(), "check", str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert ("list your load balancers in trusted_proxies" in done.stderr) is warned


async def test_a_forwarded_proto_or_host_given_twice_is_refused(make_gateway):
    """Two lines of X-Forwarded-Proto (or -Host) from a trusted proxy: which one it meant is unknown, so 400."""
    gateway = await make_gateway(trusted_proxies=["127.0.0.2/32"])
    for name, value in (("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "app.example")):
        status, body = await call(gateway, PROXY, "GET", "/public/x", headers=CIMultiDict([(name, value), (name, value)]))
        assert status == 400 and body["code"] == "bad_request" and "more than once" in body["detail"], (name, body)
