"""tests/support/ports.py: processes running at once (xdist workers, sessions) never get the same port."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.support.ports import BLOCK, LOW, _high, free_port
from tests.support.processes import ROOT

PER_PROCESS = BLOCK + 50  # more than one block each: the second claim must not collide either


def test_processes_at_once_get_disjoint_ports_below_the_ephemeral_range():
    # each process keeps running (its blocks claimed) until all have answered, as workers of one session do
    code = (f"import sys; from tests.support.ports import free_port; print(*(free_port() for _ in range({PER_PROCESS})),"
            " flush=True); sys.stdin.read()")
    env = {**os.environ, "PYTEST_XDIST_WORKER": "gw0"}  # the same worker id: the locks, not the id, keep them apart
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    try:
        got = [[int(p) for p in proc.stdout.readline().split()] for proc in procs]  # type: ignore[union-attr]
    finally:
        for proc in procs:
            proc.communicate(timeout=60)
    assert all(proc.returncode == 0 for proc in procs)
    ports = [port for ports in got for port in ports]
    assert len(ports) == len(set(ports)) == 3 * PER_PROCESS
    assert all(LOW <= port < _high() <= 32768 for port in ports)


def test_a_port_something_else_holds_is_skipped():
    held = []
    try:
        while len(held) < 3:  # take the next few ports of this process's blocks the way a foreign server would
            port = free_port()
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port + 1))  # the port after it, which free_port would hand out next
            except OSError:  # already held by something else: skipped all the same
                sock.close()
                continue
            held.append(sock)
            assert free_port() != port + 1
    finally:
        for sock in held:
            sock.close()
