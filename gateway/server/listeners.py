"""One serving process: listeners, signals, pid file, and the graceful drain on SIGTERM.

Signals: SIGTERM or SIGINT drain and exit; SIGHUP reloads the configuration.
The drain: /readyz turns 503 (``shutdown.readiness_delay`` gives a load
balancer time to notice), the listener closes, in-flight requests get up to
``shutdown.drain_timeout`` to finish, then the rest are cut and the upstream
sessions and the Redis pool are closed.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Coroutine, TypeVar

from aiohttp import web

import gateway.upstream.websocket as websocket
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.limits import CONNECTION_GUARD, ConnectionGuard
from gateway.runtime import GATEWAY, Gateway
from gateway.server.admin import create_admin_app
from gateway.server.connections import GuardedRunner
from gateway.server.fdlimit import raise_nofile
from gateway.server.front import front_handler
from gateway.server.reload import Reloader
from gateway.sources.chain import UserChain

__all__ = ["CANCEL_GRACE", "EXIT_BOUND", "ServeOptions", "remove_pid_file", "run", "serve", "write_pid_file"]

T = TypeVar("T")

log = logging.getLogger("gateway")

# After the drain, what is left is cancelled; this is only how long cancelling may take. aiohttp
# waits up to twice this per connection still busy (for the handler, then for its cancellation).
CANCEL_GRACE = 0.25
# A process exits within readiness_delay + drain_timeout + EXIT_BOUND of SIGTERM: the cut of what
# is left (2 x CANCEL_GRACE), closing the upstream pool and the store, and the interpreter's exit.
EXIT_BOUND = 1.5
PARENT_POLL = 1.0


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (the ``fast`` extra), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


GC_YOUNG = 7000  # allocations between two passes of the young generation


@dataclass(frozen=True, slots=True)
class ServeOptions:
    config_path: Path
    pid_file: Path | None = None
    reuse_port: bool = False  # a worker of `--workers N`: the port is shared with its siblings
    parent_pid: int | None = None  # a worker exits when this process is gone
    example_upstream: int | None = None  # serve the example upstream on this port of 127.0.0.1


async def serve(config: GatewayConfig, users: UserChain, options: ServeOptions) -> None:
    app = create_app(config, users=users)
    gateway = app[GATEWAY]
    gc.freeze()  # the configuration lives as long as the process: keep it out of every GC pass
    # A young-generation pass walks the objects of the requests in flight, whatever the threshold: ten times
    # fewer passes (CPython's default is 700 allocations) cost ten times less (docs/performance.md, levers).
    gc.set_threshold(GC_YOUNG, 10, 10)
    guard = app[CONNECTION_GUARD]
    guard.set_fd_limit(raise_nofile())
    runner = GuardedRunner(
        app, guard, server_header=config.server_header, handler=front_handler, access_log=None,
        shutdown_timeout=CANCEL_GRACE, handle_signals=False,
    )
    await runner.setup()
    extra: list[web.AppRunner] = []
    tasks: set[asyncio.Task[object]] = set()
    try:  # from here on the store and the upstream pool are open: close them whatever happens
        site = web.TCPSite(runner, config.listen.host, config.listen.port, reuse_port=options.reuse_port or None)
        await site.start()
        await _start_extra_listeners(gateway, config, options, extra)
        log.info("gateway listening on http://%s:%d (pid %d)", config.listen.host, config.listen.port, os.getpid())
        if options.pid_file:
            write_pid_file(options.pid_file)
        stop = asyncio.Event()
        _install_signals(stop, Reloader(gateway, options.config_path), tasks)
        if options.parent_pid is not None:
            tasks.add(asyncio.create_task(_exit_with_parent(options.parent_pid, stop)))
        await stop.wait()
        await drain(app, site)
    finally:
        for task in tasks:
            task.cancel()
        await runner.cleanup()
        for other in extra:
            await other.cleanup()
        if options.pid_file:
            remove_pid_file(options.pid_file)
    log.info("gateway stopped (pid %d)", os.getpid())


async def drain(app: web.Application, site: web.TCPSite) -> None:
    """Stop taking work and let the work in hand finish, within the configured limits."""
    gateway = app[GATEWAY]
    settings = gateway.runtime.config.shutdown
    gateway.lifecycle.draining = True
    gateway.metrics.draining.set(1)
    log.info(
        "shutting down: draining %d in-flight request(s), up to %.1fs", gateway.lifecycle.in_flight, settings.drain_timeout
    )
    if settings.readiness_delay > 0:
        await asyncio.sleep(settings.readiness_delay)
    await site.stop()  # no new connections; open keep-alive connections close after their answer
    await websocket.close_all(app)  # 1001 both ways: clients reconnect to a live instance, the drain is not held up
    if not await gateway.lifecycle.wait_idle(settings.drain_timeout):
        log.warning("drain timeout: cutting %d request(s) still in flight", gateway.lifecycle.in_flight)


async def _start_extra_listeners(
    gateway: Gateway, config: GatewayConfig, options: ServeOptions, runners: list[web.AppRunner]
) -> None:
    """The admin listener and the example upstream; each runner joins ``runners`` before it can fail."""
    if config.admin is not None:
        admin = GuardedRunner(  # its own guard: admin connections never count against the public listener's
            create_admin_app(gateway), ConnectionGuard(config.limits), server_header=config.server_header,
            access_log=None, handle_signals=False,
        )
        await admin.setup()
        runners.append(admin)
        await web.TCPSite(admin, config.admin.host, config.admin.port, reuse_port=options.reuse_port or None).start()
        log.info("admin listener (metrics, health) on http://%s:%d", config.admin.host, config.admin.port)
    if options.example_upstream is not None:
        from gateway.example_upstream import create_upstream

        upstream = web.AppRunner(create_upstream(), access_log=None, handle_signals=False)
        await upstream.setup()
        runners.append(upstream)
        await web.TCPSite(upstream, "127.0.0.1", options.example_upstream).start()
        log.info("example upstream on http://127.0.0.1:%d", options.example_upstream)


def _install_signals(stop: asyncio.Event, reloader: Reloader, tasks: set[asyncio.Task[object]]) -> None:
    loop = asyncio.get_running_loop()

    def on_hup() -> None:
        log.info("SIGHUP: reloading %s", reloader.config_path)
        task = loop.create_task(reloader.reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)


async def _exit_with_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (even by SIGKILL) drains and exits instead of lingering."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_POLL)
    log.warning("supervisor %d is gone: shutting down", parent_pid)
    stop.set()


def write_pid_file(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)


def remove_pid_file(path: Path) -> None:
    """Only our own: a newer process may have taken the file over."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
