"""`gateway run --workers N`: N processes on one port, metrics summed over them, all gone on SIGTERM."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import time
from argparse import Namespace
from pathlib import Path
from typing import Callable

import aiohttp
import pytest

from gateway.cli import worker_count
from gateway.config import ConfigError, parse_config
from gateway.server.workers import available_cpus
from tests.conftest import ROOT, base_config, gateway_command
from tests.support.processes import sample


def listening_pids(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"gateway listening on \S+ \(pid (\d+)\)", log)]


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_workers_share_the_port_sum_their_metrics_and_exit_on_sigterm(gateway_process, upstream, users_file, redis_url):
    raw = base_config(upstream, users_file, store={"backend": "redis", "url": redis_url})
    port = gateway_process(raw, "--workers", "2")
    supervisor = gateway_process.procs[port]
    await wait_for(lambda: len(listening_pids(gateway_process.log(port))) == 2, "two workers")
    workers = listening_pids(gateway_process.log(port))
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
    assert sorted(map(int, children)) == sorted(workers)

    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for _ in range(40):  # a new connection each time: the kernel spreads them over the workers
            async with s.get(base + "/public/x") as resp:
                assert resp.status == 200
        lines = [json.loads(line) for line in gateway_process.log(port).splitlines() if line.startswith("{")]
        assert {line["pid"] for line in lines if line["path"] == "/public/x"} == set(workers)
        for _ in range(4):  # whichever worker answers the scrape reports both workers' requests
            async with s.get(base + "/metrics") as resp:
                text = await resp.text()
            assert sample(text, "gateway_requests_total", route="public") == 40

        os.kill(workers[0], signal.SIGKILL)  # a crashed worker is replaced
        await wait_for(lambda: len(listening_pids(gateway_process.log(port))) == 3, "a replacement worker")
        for _ in range(10):
            async with s.get(base + "/public/x") as resp:
                assert resp.status == 200
        counts = []
        for _ in range(100):  # a relayed answer reaches the client before its worker counts it: poll a little
            async with s.get(base + "/metrics") as resp:
                counts.append(sample(await resp.text(), "gateway_requests_total", route="public"))
            if counts[-1] >= 50:
                break
            await asyncio.sleep(0.1)
        assert counts[-1] == 50, counts  # the dead one's count stays

    supervisor.send_signal(signal.SIGHUP)  # forwarded: every worker reloads
    await wait_for(lambda: gateway_process.log(port).count("configuration reloaded") == 2, "both workers to reload")

    supervisor.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(supervisor.wait, 30) == 0
    for pid in listening_pids(gateway_process.log(port)):
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the supervisor"
    assert "all workers stopped" in gateway_process.log(port)


async def test_memory_store_refuses_more_than_one_worker(tmp_path, users_file):
    """The memory store is per process: two workers would each have their own sessions."""
    raw = base_config("http://127.0.0.1:1", users_file)
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps(raw))
    proc = await asyncio.create_subprocess_exec(
        *gateway_command(), "run", "--config", str(path), "--workers", "2",
        stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and b"memory store" in err


def test_worker_count_defaults(users_file, monkeypatch):
    memory = parse_config(base_config("http://127.0.0.1:1", users_file), Path("."))
    shared = parse_config(base_config("http://127.0.0.1:1", users_file,
                                      store={"backend": "redis", "url": "redis://127.0.0.1:1/0"}), Path("."))
    monkeypatch.delenv("GATEWAY_WORKERS", raising=False)
    assert worker_count(Namespace(workers=None), memory) == 1
    assert worker_count(Namespace(workers=None), shared) == available_cpus() >= 1
    monkeypatch.setenv("GATEWAY_WORKERS", "3")
    assert worker_count(Namespace(workers=None), shared) == 3
    assert worker_count(Namespace(workers=2), shared) == 2  # the flag wins over the environment
    with pytest.raises(ConfigError):
        worker_count(Namespace(workers=0), shared)
    with pytest.raises(ConfigError, match="memory store"):
        worker_count(Namespace(workers=None), memory)


@pytest.mark.serial  # "at once" is QUICK_EXIT (30 s): on a machine loaded by parallel tests a worker takes longer to die
async def test_supervisor_gives_up_when_workers_cannot_start(tmp_path, users_file, redis_url):
    """A port taken by another program: workers die at once, and the supervisor exits 1 instead of looping."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        raw = base_config("http://127.0.0.1:1", users_file, store={"backend": "redis", "url": redis_url},
                          listen={"host": "127.0.0.1", "port": taken.getsockname()[1]})
        path = tmp_path / "g.yaml"
        path.write_text(json.dumps(raw))
        proc = await asyncio.create_subprocess_exec(
            *gateway_command(), "run", "--config", str(path), "--workers", "2",
            stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:  # it kept looping: stop it (and its workers) before the port is free again
                proc.terminate()
                await proc.wait()
    assert proc.returncode == 1 and b"giving up" in err
