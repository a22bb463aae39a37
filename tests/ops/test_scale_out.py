"""Two gateway processes on one Redis behave as one gateway."""
from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import PASSWORDS, base_config, bearer


def shared_config(upstream: str, users_file, redis_url: str) -> dict:
    return base_config(upstream, users_file, store={"backend": "redis", "url": redis_url},
                       tokens={"refresh_grace": "0s"})


async def post(session: aiohttp.ClientSession, url: str, **kwargs) -> tuple[int, dict]:
    async with session.post(url, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_reuse_of_a_token_refreshed_at_a_is_detected_at_b(gateway_process, upstream, users_file, redis_url):
    raw = shared_config(upstream, users_file, redis_url)
    a, b = f"http://127.0.0.1:{gateway_process(raw)}", f"http://127.0.0.1:{gateway_process(raw)}"
    async with aiohttp.ClientSession() as s:
        status, first = await post(s, a + "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]})
        assert status == 200
        status, second = await post(s, a + "/auth/token/refresh", json={"refresh": first["refresh"]})
        assert status == 200
        status, body = await post(s, b + "/auth/token/refresh", json={"refresh": first["refresh"]})
        assert (status, body["code"]) == (401, "token_reused")
        # The reuse revoked the whole family, for instance A too.
        status, body = await post(s, a + "/auth/token/refresh", json={"refresh": second["refresh"]})
        assert (status, body["code"]) == (401, "token_revoked")
        async with s.get(a + "/api/x", headers=bearer(second["access"])) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


async def test_logout_at_a_is_honoured_at_b_on_the_next_request(gateway_process, upstream, users_file, redis_url):
    raw = shared_config(upstream, users_file, redis_url)
    a, b = f"http://127.0.0.1:{gateway_process(raw)}", f"http://127.0.0.1:{gateway_process(raw)}"
    async with aiohttp.ClientSession() as s:
        status, pair = await post(s, b + "/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert status == 200
        async with s.get(b + "/api/x", headers=bearer(pair["access"])) as resp:
            assert resp.status == 200
        status, _ = await post(s, a + "/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"]))
        assert status == 200
        async with s.get(b + "/api/x", headers=bearer(pair["access"])) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"
        status, body = await post(s, b + "/auth/token/refresh", json={"refresh": pair["refresh"]})
        assert (status, body["code"]) == (401, "token_revoked")


async def test_concurrent_refresh_at_both_instances_mints_one_successor(gateway_process, upstream, users_file, redis_url):
    """The same refresh token sent to A and B at once: one rotation, both get the same pair (grace)."""
    raw = base_config(upstream, users_file, store={"backend": "redis", "url": redis_url})
    a, b = f"http://127.0.0.1:{gateway_process(raw)}", f"http://127.0.0.1:{gateway_process(raw)}"
    async with aiohttp.ClientSession() as s:
        _, pair = await post(s, a + "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]})
        results = await asyncio.gather(*(post(s, url + "/auth/token/refresh", json={"refresh": pair["refresh"]})
                                         for url in (a, b, a, b)))
        assert {status for status, _ in results} == {200}
        assert len({body["refresh"] for _, body in results}) == 1
