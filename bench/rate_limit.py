"""The cost of ``routes[].rate_limit`` on the hot path: ``.venv/bin/python -m bench.rate_limit``.

Two measurements, each on the memory store and on a throwaway Redis:

* one decision (``Store.rate_limit``) in a loop: its latency;
* the same authenticated GET through the gateway (in process, on a real
  socket, uvloop when installed) on a route with and without a limit that
  never refuses: requests per second and median latency, so the difference is
  what the limit costs a request.

Writes ``bench/results/rate_limit.md``.
"""
from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import yaml  # noqa: E402
from aiohttp import web  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.server.listeners import run  # noqa: E402
from gateway.sources.users import hash_password  # noqa: E402
from gateway.stores import MemoryStore, Store  # noqa: E402
from gateway.stores.redis import RedisStore  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DECISIONS = 5000
REQUESTS = 3000
CONCURRENCY = 16


async def decisions(store: Store) -> dict[str, float]:
    await store.start()
    try:
        samples = []
        for i in range(DECISIONS):
            started = time.perf_counter()
            await store.rate_limit(f"bench:{i % 100}", 0.001, 1_000_000)
            samples.append(time.perf_counter() - started)
    finally:
        await store.close()
    samples.sort()
    return {"p50_us": samples[len(samples) // 2] * 1e6, "p99_us": samples[int(len(samples) * 0.99)] * 1e6}


async def through_gateway(tmp: Path, store: dict[str, Any], upstream: str) -> dict[str, dict[str, float]]:
    users = tmp / "users.yaml"
    users.write_text(yaml.safe_dump({"users": {"alice": {"password_hash": hash_password("pw"), "claims": {}}}}))
    raw = {"tokens": {"secret": "b" * 40}, "users_file": str(users), "store": store,
           "limits": {"max_requests_per_client": 10_000},
           "routes": [{"name": "plain", "prefix": "/plain", "upstream": upstream},
                      {"name": "limited", "prefix": "/limited", "upstream": upstream,
                       "rate_limit": {"requests": 1_000_000, "per": "1s"}}]}
    runner = web.AppRunner(create_app(parse_config(raw, tmp)), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    out: dict[str, dict[str, float]] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
            async with session.post(base + "/auth/token", json={"username": "alice", "password": "pw"}) as resp:
                headers = {"Authorization": f"Bearer {(await resp.json())['access']}"}
            for path in ("/plain/x", "/limited/x", "/plain/x", "/limited/x"):  # each twice, interleaved
                latencies: list[float] = []
                queue = iter(range(REQUESTS))

                async def worker(queue: Iterator[int] = queue, path: str = path, latencies: list[float] = latencies) -> None:
                    for _ in queue:
                        started = time.perf_counter()
                        async with session.get(base + path, headers=headers) as resp:
                            await resp.read()
                            assert resp.status == 200, resp.status
                        latencies.append(time.perf_counter() - started)

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
                rps = REQUESTS / (time.perf_counter() - started)
                best = out.get(path)
                if best is None or rps > best["rps"]:
                    out[path] = {"rps": rps, "p50_ms": statistics.median(latencies) * 1000}
    finally:
        await runner.cleanup()
    return out


async def main() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is needed (scripts/install-bench-deps.sh)")
    redis_port = free_port()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        redis = subprocess.Popen([binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", tmp_dir], stdout=subprocess.DEVNULL)
        upstream_app = web.Application()
        upstream_app.router.add_get("/{tail:.*}", lambda request: web.json_response({"ok": True}))
        upstream_runner = web.AppRunner(upstream_app, access_log=None)
        await upstream_runner.setup()
        upstream_port = free_port()
        await web.TCPSite(upstream_runner, "127.0.0.1", upstream_port).start()
        try:
            time.sleep(0.5)
            url = f"redis://127.0.0.1:{redis_port}/0"
            rows = []
            for name, store, settings in [("memory", MemoryStore(), {"backend": "memory"}),
                                          ("redis", RedisStore(url), {"backend": "redis", "url": url})]:
                one = await decisions(store)
                e2e = await through_gateway(tmp, settings, f"http://127.0.0.1:{upstream_port}")
                plain, limited = e2e["/plain/x"], e2e["/limited/x"]
                rows.append(f"| {name} | {one['p50_us']:.0f} µs | {one['p99_us']:.0f} µs | {plain['rps']:.0f} | "
                            f"{limited['rps']:.0f} ({(limited['rps'] / plain['rps'] - 1) * 100:+.0f} %) | "
                            f"{plain['p50_ms']:.2f} → {limited['p50_ms']:.2f} ms |")
        finally:
            await upstream_runner.cleanup()
            redis.terminate()
            redis.wait(10)
    text = "\n".join([
        "# routes[].rate_limit on the hot path",
        "",
        f"`python -m bench.rate_limit`: {DECISIONS} decisions in a loop; then {REQUESTS} authenticated GETs "
        f"(concurrency {CONCURRENCY}, in-process gateway and upstream, one core) on a route without and with a "
        "limit that never refuses, best of two runs each.",
        "",
        "| store | decision p50 | decision p99 | req/s without | req/s with limit | median latency |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    out = ROOT / "bench/results/rate_limit.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    run(main())
