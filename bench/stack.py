"""Starting and stopping everything the benchmark measures, all on loopback.

One ``Stack`` owns a temp dir and every process it started; ``close`` stops
exactly those (by the process groups it created), even after a failure.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import configs
from .procs import Proc, free_port, start, wait_http, wait_tcp

__all__ = ["Target", "Stack", "ROOT"]

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable


@dataclass
class Target:
    """Something wrk can hit: a base URL, and the process tree to weigh for memory.

    ``also_weighed``: further processes whose CPU a request to this target costs
    (nginx ``auth_request`` asks a gateway on every request: both count).
    """

    name: str
    base: str
    proc: Proc | None = None
    injects_identity: bool = False
    startup_s: float = 0.0
    also_weighed: list[Proc] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.base + configs.API_PATH

    @property
    def cpu_pids(self) -> list[int]:
        """Roots of the process trees whose CPU time a request to this target costs."""
        return [p.pid for p in ([self.proc] if self.proc else []) + self.also_weighed]


@dataclass
class Stack:
    """The processes of one benchmark run and the temp dir that holds their files."""

    keep_tmp: bool = False
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gwbench-")))
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    procs: list[Proc] = field(default_factory=list)

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = start(name, argv, self.tmp, env=env, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def _ready(self, proc: Proc, url: str, timeout: float = 30.0) -> float:
        """Wait until ``proc`` answers ``url``; a process that never does is stopped and forgotten."""
        try:
            return wait_http(proc, url, timeout)
        except RuntimeError:
            self.stop(proc)
            raise

    def stop(self, proc: Proc | None) -> None:
        if proc is not None:
            proc.stop()
            if proc in self.procs:
                self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if not self.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the pieces -------------------------------------------------------------

    def upstream(self) -> Target:
        port = free_port()
        proc = self._start("upstream", [PY, "-m", "bench.upstream", "--port", str(port)])
        base = f"http://127.0.0.1:{port}"
        t = self._ready(proc, base + "/ready")
        return Target("direct", base, proc, startup_s=t)

    def redis(self) -> int:
        """A throwaway redis-server: no persistence, never the shared one on 6379."""
        port = free_port()
        proc = self._start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no", "--databases", "4",
                                     "--dir", str(self.tmp), "--maxclients", "10000"])
        wait_tcp(proc, port)
        return port

    def nginx(self, upstream: Target) -> Target:
        port = free_port()
        ngx = self.tmp / "nginx"
        ngx.mkdir(exist_ok=True)
        conf = configs.write_nginx_conf(ngx, port, int(upstream.base.rsplit(":", 1)[1]))
        proc = self._start("nginx", ["nginx", "-p", str(ngx), "-e", str(ngx / "nginx-error.log"),
                                     "-c", str(conf), "-g", "daemon off;"])
        base = f"http://127.0.0.1:{port}"
        t = self._ready(proc, base + "/ready")
        return Target("nginx", base, proc, startup_s=t)

    def haproxy(self, upstream: Target) -> Target:
        """HAProxy verifying the same HS256 token natively (``jwt_verify``), one thread."""
        port = free_port()
        hdir = self.tmp / "haproxy"
        hdir.mkdir(exist_ok=True)
        conf = configs.write_haproxy_conf(hdir, port, int(upstream.base.rsplit(":", 1)[1]), self.secret)
        proc = self._start("haproxy", ["haproxy", "-db", "-f", str(conf)])
        base = f"http://127.0.0.1:{port}"
        t = self._ready(proc, base + "/ready")
        return Target("haproxy", base, proc, injects_identity=True, startup_s=t)

    def nginx_auth_request(self, upstream: Target, gateway: Target) -> Target:
        """nginx proxying to the upstream after asking ``gateway``'s ``/auth/me`` (``auth_request``) each time."""
        port = free_port()
        ngx = self.tmp / "nginx-authreq"
        ngx.mkdir(exist_ok=True)
        conf = configs.write_nginx_conf(ngx, port, int(upstream.base.rsplit(":", 1)[1]),
                                        auth_port=int(gateway.base.rsplit(":", 1)[1]))
        proc = self._start("nginx-authreq", ["nginx", "-p", str(ngx), "-e", str(ngx / "nginx-error.log"),
                                             "-c", str(conf), "-g", "daemon off;"])
        base = f"http://127.0.0.1:{port}"
        t = self._ready(proc, base + "/ready")
        also = [gateway.proc] if gateway.proc else []
        return Target("nginx-authreq", base, proc, startup_s=t, also_weighed=also)

    def prototype(self, upstream: Target) -> Target:
        """``bench/protocol_prototype.py`` (NOT the gateway) on gateway-memory's configuration: the ceiling
        of the gateway's checks without aiohttp's server."""
        port = free_port()
        pdir = self.tmp / "prototype"
        pdir.mkdir(exist_ok=True)
        users = self.tmp / "users.yaml"
        if not users.exists():
            configs.write_users(users)
        shutil.copy(users, pdir / "users.yaml")
        path = configs.write_gateway_config(pdir / "gateway.yaml", configs.gateway_config(port, upstream.base, None, 20))
        proc = self._start("prototype", [PY, "-m", "bench.protocol_prototype", "--config", str(path), "--port", str(port)],
                           env={"GATEWAY_SECRET": self.secret})
        base = f"http://127.0.0.1:{port}"
        t = self._ready(proc, base + "/ready")
        return Target("prototype", base, proc, injects_identity=True, startup_s=t)

    def naive(self, upstream: Target) -> Target:
        port = free_port()
        proc = self._start("naive", [PY, "-m", "bench.naive_proxy", "--port", str(port),
                                     "--upstream", upstream.base], env={"GATEWAY_SECRET": self.secret})
        base = f"http://127.0.0.1:{port}"
        t = self._ready(proc, base + "/ready")
        return Target("naive", base, proc, injects_identity=True, startup_s=t)

    def gateway(self, name: str, upstream: Target, redis_url: str | None, n_routes: int = 20,
                workers: int = 1, store_extra: dict[str, object] | None = None,
                extra: dict[str, object] | None = None, prefix: str = "gwbench:") -> Target:
        """Write a config with ``n_routes`` routes (and the top-level keys of ``extra``) and start ``gateway run`` on it."""
        port = free_port()
        gdir = self.tmp / name
        gdir.mkdir(exist_ok=True)
        users = self.tmp / "users.yaml"
        if not users.exists():
            configs.write_users(users)
        shutil.copy(users, gdir / "users.yaml")
        cfg = configs.gateway_config(port, upstream.base, redis_url, n_routes, prefix=prefix, store_extra=store_extra)
        cfg.update(extra or {})
        path = configs.write_gateway_config(gdir / "gateway.yaml", cfg)
        # Always explicit: `gateway run` defaults to one worker per core.
        argv = _gateway_argv() + ["run", "--config", str(path), "--workers", str(workers)]
        proc = self._start(name, argv, env={"GATEWAY_SECRET": self.secret})
        base = f"http://127.0.0.1:{port}"
        t = self._ready(proc, base + "/healthz", timeout=120)
        return Target(name, base, proc, injects_identity=True, startup_s=t)


def _gateway_argv() -> list[str]:
    """The installed ``gateway`` console script, or the module if it is not installed yet."""
    script = ROOT / ".venv" / "bin" / "gateway"
    if script.exists() and os.access(script, os.X_OK):
        return [str(script)]
    # -P: not the current directory first on sys.path (the checkout this runs from), so PYTHONPATH picks the
    # sources (bench/ab.py gives each gateway its own tree that way)
    return [PY, "-P", "-c", "import sys; from gateway.cli import main; sys.exit(main())"]
