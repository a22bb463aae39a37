"""Process plumbing for the benchmark: free ports, child processes, readiness, memory.

Every process is started in its own session so that it (and any workers it
forks) can be stopped by process group without touching anything we did not
start.  Peak memory comes from /proc (VmHWM) summed over the process tree,
because a multi-worker gateway keeps most of its memory in the children; CPU
time likewise (utime + stime of every process in the tree, from
/proc/<pid>/stat), which is what "CPU per request" is made of.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port  # the tests' one allocator: no two processes get one port

__all__ = ["Proc", "free_port", "start", "wait_http", "tree_pids", "peak_rss_kib", "rss_kib", "cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """A started child: its name (for messages), Popen handle and log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the process's log, to explain a failed start without a second run."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group we created, then SIGKILL it if it lingers."""
        if not self.alive():
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)


def start(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    """Start ``argv`` in a new session with stdout+stderr to ``log_dir/name.log``."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    return Proc(name, popen, log)


def wait_http(proc: Proc, url: str, timeout: float = 30.0) -> float:
    """Poll ``url`` until it answers at all (any status); seconds it took.

    Any HTTP answer means the listener is up; a 401 from an auth route counts.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                pass
            return time.monotonic() - proc.started
        except urllib.error.HTTPError:
            return time.monotonic() - proc.started
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not answering {url} after {timeout}s:\n{proc.log_tail()}")


def wait_tcp(proc: Proc, port: int, timeout: float = 30.0) -> None:
    """Wait until something accepts on 127.0.0.1:port (for non-HTTP servers like Redis)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not listening on {port} after {timeout}s:\n{proc.log_tail()}")


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields follow the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants, found by scanning /proc for parent ids."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = _ppid(int(entry))
            if ppid is not None:
                parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kib(root: int) -> int:
    """Sum of VmHWM (peak resident set) over the process tree, in KiB."""
    return sum(_status_kib(pid, "VmHWM") for pid in tree_pids(root))


def rss_kib(root: int) -> int:
    """Sum of current VmRSS over the process tree, in KiB (sampled during the stream test)."""
    return sum(_status_kib(pid, "VmRSS") for pid in tree_pids(root))


def _cpu_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()  # fields after the command name, starting with the state (field 3)
    return int(fields[11]) + int(fields[12])  # utime (14) + stime (15)


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU seconds used so far by the process trees under ``roots`` (live processes only)."""
    pids = {pid for root in roots for pid in tree_pids(root)}
    return sum(_cpu_ticks(pid) for pid in pids) / _TICKS
