"""The one ``free_port()`` of the tests and the benchmark: a loopback port for a server about to start.

Binding port 0, closing and returning the number is racy: another pytest-xdist worker (or another
test session on the machine) can be handed the same number, and an outgoing connection can take it
as its local port before the server binds it. Here instead:

- ports come from 20000-32767, below Linux's ephemeral range (``ip_local_port_range``, 32768-60999
  by default), so no outgoing connection and no ``bind(0)`` ever takes one;
- that range is cut into blocks of ``BLOCK`` ports, and a process claims a block by an exclusive
  ``flock`` on ``$TMPDIR/jwt-gateway-test-ports/block-<n>.lock`` that it holds until it exits (the
  kernel releases it even after a crash): no two processes, whether xdist workers of one session or
  different sessions, ever hand out ports of the same block;
- within its blocks a process hands each port out once, in turn, and skips one that something
  outside the tests holds (a bind check on 127.0.0.1 and ::1); only after all of its blocks (up to
  ``MAX_BLOCKS``) are used does it start over, when the servers of those first ports are long gone.

Every launcher (subprocess servers, ``gateway run``, slapd, databases, Redis) takes its port here, so
a server started on one of them never meets another test's server on the same port.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import tempfile
import threading
from pathlib import Path

LOW = 20000
BLOCK = 200
MAX_BLOCKS = 10  # per process; a whole serial run of the suite needs fewer than that
LOCK_DIR = Path(tempfile.gettempdir()) / "jwt-gateway-test-ports"


def _high() -> int:
    """The end (exclusive) of the range: the start of the ephemeral range, at most 32768."""
    try:
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low_ephemeral = 32768
    return min(low_ephemeral, 32768)


class _Ports:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.blocks: list[tuple[int, int]] = []  # (first port, lock file descriptor), in claim order
        self.index = 0  # of the next port in those blocks, in order

    def _reset_after_fork(self) -> None:
        # a forked child shares the parent's locks (one open file description): it must claim its own
        self.pid, self.blocks, self.index = os.getpid(), [], 0

    def _claim_block(self) -> int | None:
        if not LOCK_DIR.is_dir():
            LOCK_DIR.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):  # another user's session made it first
                os.chmod(LOCK_DIR, 0o1777)  # shared by every user's test sessions, like /tmp
        count = (_high() - LOW) // BLOCK
        # start where this xdist worker's blocks would be if every session used one, so workers rarely contend
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        start = (int(worker) if worker.isdigit() else 0) * MAX_BLOCKS
        claimed = {first for first, _ in self.blocks}
        for i in range(count):
            first = LOW + ((start + i) % count) * BLOCK
            if first in claimed:
                continue
            path = LOCK_DIR / f"block-{first}.lock"
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o444)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            os.set_inheritable(fd, False)
            self.blocks.append((first, fd))
            return first
        return None

    def _next(self) -> int:
        """The next port of this process's blocks, claiming a new block when those are used up."""
        if self.pid != os.getpid():
            self._reset_after_fork()
        if self.index >= len(self.blocks) * BLOCK:
            if len(self.blocks) < MAX_BLOCKS and self._claim_block() is not None:
                pass
            elif not self.blocks:
                raise RuntimeError(f"no free block of test ports in {LOW}-{_high()} (every lock in {LOCK_DIR} is held)")
            else:
                self.index = 0  # start over in the first block: its servers are long gone
        port = self.blocks[self.index // BLOCK][0] + self.index % BLOCK
        self.index += 1
        return port

    def free_port(self) -> int:
        with self.lock:
            for _ in range(MAX_BLOCKS * BLOCK):
                port = self._next()
                if _bindable(port):
                    return port
        raise RuntimeError("every port of this process's blocks is in use")


def _bindable(port: int) -> bool:
    """Nothing outside the tests holds ``port`` on loopback (nor a wildcard address)."""
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((host, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):  # no IPv6 here
                continue
            return False
    return True


_PORTS = _Ports()


def free_port() -> int:
    """A loopback TCP port that no other test process hands out and nothing else holds now."""
    return _PORTS.free_port()
