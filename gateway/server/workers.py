"""``gateway run --workers N``: a small supervisor over N serving processes that share one port.

Each worker is a ``gateway run`` process of its own that binds the port with
SO_REUSEPORT, so the kernel spreads new connections over them. The supervisor
binds nothing: it forwards SIGHUP (reload) and SIGTERM/SIGINT (drain, then
exit) to every worker, restarts a worker that dies, and gives up with exit
code 1 when workers keep dying right after their start (a taken port, an
unusable store), so the orchestrator sees the failure.

Metrics: every worker gets the same ``PROMETHEUS_MULTIPROC_DIR`` (the
operator's if set, else a temporary directory), so whichever worker answers a
scrape reports the sum over all workers.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable

from prometheus_client.multiprocess import mark_process_dead

from gateway.observe.metrics import MULTIPROC_ENV

__all__ = ["Supervisor", "available_cpus"]

log = logging.getLogger("gateway")

QUICK_EXIT = 30.0  # a worker dying sooner than this after its start counts toward a crash loop (a worker prepares
# its login decoy and store before it binds, seconds on a busy machine; a healthy one runs for hours)
MAX_QUICK_EXITS = 5


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


class Supervisor:
    def __init__(self, count: int, command: Callable[[int], list[str]], stop_timeout: Callable[[], float]) -> None:
        self.count = count
        self.command = command  # the worker command line for a slot
        self.stop_timeout = stop_timeout  # read at SIGTERM: the drain limits of the config in force
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._quick_exits = 0
        self.failed = False

    async def run(self) -> int:
        metrics_dir, owned = _metrics_dir()
        env = {**os.environ, MULTIPROC_ENV: metrics_dir}
        self._install_signals()
        watchers = [asyncio.create_task(self._keep_running(slot, env, metrics_dir)) for slot in range(self.count)]
        log.info("supervisor %d: starting %d workers", os.getpid(), self.count)
        try:
            await self._stopping.wait()
            self._signal_all(signal.SIGTERM)
            limit = self.stop_timeout()
            _, pending = await asyncio.wait(watchers, timeout=limit)
            if pending:
                log.warning("workers still running after %.0fs: killing them", limit)
                self._signal_all(signal.SIGKILL)
                await asyncio.wait(pending, timeout=5)
        finally:
            for task in watchers:
                task.cancel()
            if owned:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("supervisor %d: all workers stopped", os.getpid())
        return 1 if self.failed else 0

    async def _keep_running(self, slot: int, env: dict[str, str], metrics_dir: str) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(*self.command(slot), env=env)
            self._procs[slot] = proc
            if self._stopping.is_set():  # SIGTERM arrived while this one was starting
                proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            mark_process_dead(proc.pid, metrics_dir)  # type: ignore[no-untyped-call]
            if self._stopping.is_set():
                return
            quick = time.monotonic() - started < QUICK_EXIT
            self._quick_exits = self._quick_exits + 1 if quick else 0
            log.error("worker %d (pid %d) exited with code %s; restarting it", slot, proc.pid, code)
            if self._quick_exits >= MAX_QUICK_EXITS:
                log.error("workers keep dying right after their start: giving up")
                self.failed = True
                self._stopping.set()
                return
            await asyncio.sleep(0.25 * self._quick_exits)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._signal_all, signal.SIGHUP)

    def _signal_all(self, sig: int) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.send_signal(sig)


def _metrics_dir() -> tuple[str, bool]:
    """The operator's PROMETHEUS_MULTIPROC_DIR, emptied of a previous run's samples, or a new temporary one."""
    given = os.environ.get(MULTIPROC_ENV)
    if not given:
        return tempfile.mkdtemp(prefix="gateway-metrics-"), True
    path = Path(given)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return given, False
