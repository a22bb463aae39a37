"""Throwaway Redis Sentinel and one-node Cluster servers, started by the tests on free ports."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from tests.support.processes import RedisServer, free_port, wait_for_port


def start_redis(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
    except TimeoutError:
        proc.kill()
        raise
    return proc


def stop_servers(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def sentinel(tmp_path: Path, redis_server: RedisServer) -> Iterator[int]:
    """A sentinel watching the session's redis-server as master ``gwmaster``."""
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor gwmaster 127.0.0.1 {redis_server.port} 1\n"
        "sentinel down-after-milliseconds gwmaster 60000\n"
    )
    proc = start_redis([str(conf), "--sentinel"], port)
    yield port
    stop_servers(proc)


@pytest.fixture
def cluster_node(tmp_path: Path) -> Iterator[int]:
    """A one-node Redis Cluster owning every slot: it refuses cross-slot commands like a big one."""
    port = free_port()
    proc = start_redis(["--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                   "--cluster-port", str(free_port()), "--cluster-config-file", str(tmp_path / "nodes.conf"), "--save", "", "--appendonly", "no",
                   "--dir", str(tmp_path)], port)
    client = redis.Redis(port=port, decode_responses=True)
    client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    deadline = time.monotonic() + 10
    while "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "the cluster did not come up"
        time.sleep(0.05)
    yield port
    client.close()
    stop_servers(proc)
