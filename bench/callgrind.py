"""Instructions per request, counted by valgrind's callgrind: an A/B figure a busy machine does not move.

CPU time per request on a shared 2-core machine spreads by several per cent between rounds, so a lever of
1-3% cannot be told from noise (bench/README.md). Callgrind counts the instructions the gateway's process
executes (its user space; the kernel's work, such as a socket send, is not counted): the same binary doing
the same work counts the same, whatever else the machine is doing (within about 0.05% here). The gateway
starts under callgrind with its instrumentation off (it starts and warms up at a few times its native
cost), then ``Counter.on`` switches it on; each ``Counter.count`` zeroes the counters, runs a fixed number
of requests over one keep-alive connection, and reads the instructions from a dump.

Instructions are not time: a lever that trades instructions for cache misses, or a system call for user
work, is judged by CPU time (``bench.ab`` without ``--instructions``) and ``strace -c`` as well.
"""
from __future__ import annotations

import http.client
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["argv", "Counter", "requests"]

_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)


def argv(out: Path) -> list[str]:
    """The prefix that runs a command under callgrind, instrumentation off until ``Counter.on``."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def requests(url: str, token: str, n: int) -> None:
    """``n`` GETs of ``url`` with the bearer ``token`` over one keep-alive connection; each must answer 200."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    try:
        for _ in range(n):
            conn.request("GET", parts.path or "/", headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url} answered {resp.status}")
    finally:
        conn.close()


class Counter:
    """The callgrind of one process (its pid), which was started with ``argv(out)``."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid = pid
        self.out = out
        self.dumps = 0

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.pid)], check=True, capture_output=True, timeout=120)

    def on(self) -> None:
        """Switch the instrumentation on (the process runs many times slower from here on)."""
        self._control("--instr=on")

    def count(self, n: int, url: str, token: str) -> float:
        """Instructions per request over ``n`` requests to ``url``."""
        self._control("--zero")
        requests(url, token, n)
        self.dumps += 1
        self._control(f"--dump=ab{self.dumps}")
        dump = Path(f"{self.out}.{self.dumps}")
        deadline = time.monotonic() + 60
        while not (dump.exists() and (m := _TOTAL.search(dump.read_bytes()))):
            if time.monotonic() > deadline:
                raise RuntimeError(f"callgrind wrote no totals to {dump}")
            time.sleep(0.1)
        return int(m.group(1)) / n
