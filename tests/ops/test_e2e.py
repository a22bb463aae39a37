"""End to end: the real `gateway run` process, a real upstream process and a real Redis."""
from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import PASSWORDS, ROOT, base_config, bearer, free_port


async def test_full_session_through_real_processes(gateway_process, upstream_process, users_file, redis_url):
    raw = base_config(upstream_process, users_file, store={"backend": "redis", "url": redis_url},
                      tokens={"access_lifetime": "1s", "refresh_grace": "0.5s"})
    base = f"http://127.0.0.1:{gateway_process(raw)}"
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]}) as resp:
            assert resp.status == 200
            first = await resp.json()
        async with http.get("/api/orders?page=2", headers={**bearer(first["access"]), "X-User-Id": "admin"}) as resp:
            seen = await resp.json()
            assert resp.status == 200 and seen["query"] == "page=2"
            assert seen["headers"]["X-User-Id"] == "bob" and seen["headers"]["X-User-Roles"] == "user"

        await asyncio.sleep(1.2)  # the access token expires
        async with http.get("/api/orders", headers=bearer(first["access"])) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "token_expired"

        async with http.post("/auth/token/refresh", json={"refresh": first["refresh"]}) as resp:
            second = await resp.json()
        async with http.get("/api/orders", headers=bearer(second["access"])) as resp:
            assert resp.status == 200

        await asyncio.sleep(0.6)  # past the grace window: the old refresh token is now a stolen one
        async with http.post("/auth/token/refresh", json={"refresh": first["refresh"]}) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "token_reused"
        async with http.post("/auth/token/refresh", json={"refresh": second["refresh"]}) as resp:
            assert (await resp.json())["code"] == "token_revoked"


async def test_logout_through_real_processes(gateway_process, upstream_process, users_file, redis_url):
    """Own process with the default lifetimes: a 1 s token could expire before its revocation is seen on a loaded machine."""
    raw = base_config(upstream_process, users_file, store={"backend": "redis", "url": redis_url})
    base = f"http://127.0.0.1:{gateway_process(raw)}"
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]}) as resp:
            third = await resp.json()
        async with http.get("/api/orders", headers=bearer(third["access"])) as resp:
            assert resp.status == 200
        async with http.post("/auth/logout", json={"refresh": third["refresh"]}, headers=bearer(third["access"])) as resp:
            assert resp.status == 200
        async with http.get("/api/orders", headers=bearer(third["access"])) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"
        async with http.get("/readyz") as resp:
            assert resp.status == 200


async def test_example_quick_start(gateway_process):
    """What the README's quick start shows: the example config, users and upstream in one process."""
    example = free_port()  # `make run` uses 9001; a test never takes a fixed port
    raw = {"tokens": {"secret": "${GATEWAY_SECRET:-dev-only-secret-change-me-0123456789abcdef}"},
           "users_file": str(ROOT / "config" / "users.yaml"),
           "routes": [{"prefix": "/api", "upstream": f"http://127.0.0.1:{example}", "headers": {"X-User-Id": "sub"}}]}
    port = gateway_process(raw, "--example-upstream", "--example-upstream-port", str(example))
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        async with http.post("/auth/token", data={"username": "alice", "password": "alice-password"}) as resp:
            access = (await resp.json())["access"]
        async with http.get("/api/hello", headers=bearer(access)) as resp:
            assert (await resp.json())["headers"]["X-User-Id"] == "alice"
