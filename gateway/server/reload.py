"""Hot reload: re-read the config and users file, and put them in force only if both are valid.

A new ``Runtime`` is built beside the running one and swapped in with one
assignment; a request that started before keeps the runtime it started with
(``dispatch`` takes one snapshot), so nothing in flight is dropped. A file with
any problem is refused whole: every problem is logged and the running
configuration stays.

What a running process cannot change (the listeners and the store connection)
is refused too, with a message that says a restart is needed: reloading half a
file would leave the process running something the file does not say.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.observe.audit import emit
from gateway.runtime import Gateway, Runtime
from gateway.sources.base import UserSource
from gateway.sources.registry import build_chain, retired_sources

__all__ = ["Reloader", "restart_only_changes"]

log = logging.getLogger("gateway")
RETIRE_AFTER = 30.0  # seconds a replaced identity source stays open for logins already running


def restart_only_changes(running: GatewayConfig, new: GatewayConfig) -> list[str]:
    """Problems for every setting that differs but only takes effect on a restart."""
    problems = []
    if running.listen != new.listen:
        problems.append("listen: changing the listener needs a restart")
    if running.server_header != new.server_header:
        problems.append("server_header: changing it needs a restart")
    if _admin_listener(running) != _admin_listener(new):  # its keys (admin.keys, admin.keys_file) may change
        problems.append("admin: changing the admin listener needs a restart (its keys may change)")
    if running.store.connection_settings() != new.store.connection_settings():
        problems.append("store: changing backend, url, prefix or timeout needs a restart (failure_mode may change)")
    if running.store.revocation_cache != new.store.revocation_cache:
        problems.append("store.revocation_cache: changing it needs a restart")
    if running.audit != new.audit:
        problems.append("audit: changing where audit events go needs a restart")
    if running.credentials != new.credentials:
        problems.append("credentials: changing the credentials database or its keys needs a restart (the schema is migrated on start)")
    if running.limits != new.limits:
        problems.append("limits: changing them needs a restart (connection and pool bounds are set at start)")
    return problems


def _admin_listener(config: GatewayConfig) -> tuple[str, int] | None:
    return None if config.admin is None else (config.admin.host, config.admin.port)


class Reloader:
    """Reloads one gateway from one file; overlapping reloads (two quick SIGHUPs) run one after the other."""

    def __init__(self, gateway: Gateway, config_path: str | Path) -> None:
        self.gateway = gateway
        self.config_path = Path(config_path)
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def reload(self) -> bool:
        async with self._lock:
            try:
                runtime = await asyncio.to_thread(self._build)
                await runtime.users.prepare()  # the new chain's login decoy, before it serves a login
            except ConfigError as exc:
                self._refused(exc.problems)
                return False
            except Exception as exc:  # never let a reload take the running process down
                log.exception("reload of %s failed (%s); the running configuration stays", self.config_path, type(exc).__name__)
                self.gateway.metrics.reloads.labels("failure").inc()
                return False
            previous = self.gateway.runtime.users
            self.gateway.swap(runtime)
            self._retire(retired_sources(previous, runtime.users))
            self.gateway.metrics.reloads.labels("success").inc()
            self.gateway.metrics.last_reload.set_to_current_time()
            log.info(
                "configuration reloaded from %s: %d routes, %d users",
                self.config_path, len(runtime.config.routes), len(runtime.users),
            )
            emit("config.reloaded", path=str(self.config_path), routes=len(runtime.config.routes))
            return True

    def _build(self) -> Runtime:
        """Runs in a thread: file I/O and the users file's argon2 dummy hash stay off the event loop."""
        config = load_config(self.config_path)
        users = build_chain(config, self.gateway.metrics, previous=self.gateway.runtime.users)
        problems = restart_only_changes(self.gateway.runtime.config, config)
        if problems:
            raise ConfigError(problems)
        runtime = Runtime.build(config, self.gateway.store, users, events=self.gateway.metrics)
        runtime.adopt_credentials(self.gateway.runtime)  # one credentials database pool per process
        return runtime

    def _retire(self, sources: list[UserSource]) -> None:
        """Close the pools of sources the new configuration dropped, once logins begun with them are done."""
        if not sources:
            return

        async def close_later() -> None:
            await asyncio.sleep(RETIRE_AFTER)
            await asyncio.gather(*(s.close() for s in sources), return_exceptions=True)

        task = asyncio.get_running_loop().create_task(close_later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _refused(self, problems: list[str]) -> None:
        self.gateway.metrics.reloads.labels("failure").inc()
        log.error(
            "reload refused, %d problem(s) in %s; the running configuration stays in force", len(problems), self.config_path
        )
        for problem in problems:
            log.error("  %s", problem)
