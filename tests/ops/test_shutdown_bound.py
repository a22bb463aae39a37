"""SIGTERM with work still in hand: the process exits within shutdown.drain_timeout plus a stated bound."""
from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from gateway.server.listeners import EXIT_BOUND
from tests.conftest import base_config
from tests.support.processes import BOUND
from tests.support.sockets import connect, stalled_upload

DRAIN = 3.0
SLACK = 3.0  # a loaded test machine: process start-up of the interpreter's exit, scheduling


@pytest.mark.parametrize("workers", [1, 2])
async def test_exit_within_drain_timeout_plus_the_bound(gateway_process, gated, users_file, redis_url, workers):
    raw = base_config(gated.url, users_file, shutdown={"drain_timeout": f"{DRAIN}s"},
                      routes=[{"name": "slow", "prefix": "/slow", "upstream": gated.url, "auth": "none"}])
    if workers > 1:  # several workers need a shared store
        raw["store"] = {"backend": "redis", "url": redis_url}
    port = gateway_process(raw, "--workers", str(workers))
    proc = gateway_process.procs[port]
    async with aiohttp.ClientSession() as client:
        stuck = [asyncio.create_task(client.get(f"http://127.0.0.1:{port}/slow/{i}")) for i in range(4)]
        await asyncio.wait_for(gated.started.wait(), BOUND)
        idle = [await connect(port) for _ in range(3)]  # connections that never send a request
        upload = await stalled_upload(port)  # and a body that never finishes
        await asyncio.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, DRAIN + EXIT_BOUND + SLACK + BOUND)
        took = time.monotonic() - started
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
        for _, writer in (*idle, upload):
            writer.close()
    print(f"exit after SIGTERM: {took:.2f}s (drain_timeout {DRAIN}s, workers {workers})")
    assert code == 0
    assert took < DRAIN + EXIT_BOUND + SLACK, took
    assert "Traceback" not in gateway_process.log(port)
