"""Front proxies in decision mode, run from the very files in deploy/decision/ (only the marked lines changed).

Each marked line of a shipped config ends in a comment ``@NAME@``; ``shipped``
replaces such lines, nothing else, so the tests run what operators copy.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from tests.support.processes import ROOT, ServerProcess, _require

__all__ = ["DEPLOY", "caddy_front", "echo_upstream", "nginx_front", "shipped"]

DEPLOY = ROOT / "deploy" / "decision"


def shipped(name: str, replacements: dict[str, str]) -> str:
    """``deploy/decision/<name>`` with each line marked ``@KEY@`` replaced by ``replacements[KEY]``."""
    text = (DEPLOY / name).read_text()
    for key, line in replacements.items():
        text, count = re.subn(rf"^[^\n]*@{key}@[^\n]*$", lambda _: line, text, flags=re.M)
        assert count >= 1, f"deploy/decision/{name} lost its @{key}@ line"
    return text


def echo_upstream(tmp: Path) -> ServerProcess:
    """The example upstream: echoes method, path, query and every header that reached it."""
    return ServerProcess("echo", lambda port, _: [sys.executable, "-m", "gateway.example_upstream", "--port", str(port)],
                         tmp).start()


def nginx_front(tmp: Path, gateway_port: int, app_port: int) -> ServerProcess:
    """Debian's nginx with deploy/decision/nginx.conf included in a minimal main file, everything under ``tmp``."""
    binary = _require(shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin"), "nginx (Debian's package)")

    def command(port: int, tmp: Path) -> list[str]:
        site = shipped("nginx.conf", {
            "CACHE": f"proxy_cache_path {tmp}/decisions levels=1:2 keys_zone=gateway_decisions:1m inactive=60s "
                     "use_temp_path=off;",
            "GATEWAY": f"upstream gateway {{ server 127.0.0.1:{gateway_port}; keepalive 8; }}",
            "APP": f"upstream app {{ server 127.0.0.1:{app_port}; keepalive 8; }}",
            "LISTEN": f"listen 127.0.0.1:{port};",
        })
        (tmp / "gateway-decision.conf").write_text(site)
        shutil.copy(DEPLOY / "gateway-proxy-headers.conf", tmp / "gateway-proxy-headers.conf")
        main = tmp / "nginx.conf"
        main.write_text(
            f"daemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n proxy_temp_path {tmp}/proxy;\n"
            f" fastcgi_temp_path {tmp}/fastcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n"
            f" include {tmp}/gateway-decision.conf;\n}}\n")
        return [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(main)]

    return ServerProcess("nginx", command, tmp).start()


def caddy_front(tmp: Path, gateway_port: int, app_port: int) -> ServerProcess:
    """Debian's caddy running deploy/decision/Caddyfile (admin API off, no automatic HTTPS), state under ``tmp``."""
    binary = _require(shutil.which("caddy"), "caddy (Debian's package)")

    def command(port: int, tmp: Path) -> list[str]:
        caddyfile = tmp / "Caddyfile"
        caddyfile.write_text(shipped("Caddyfile", {
            "LISTEN": f"http://:{port} {{\n\tbind 127.0.0.1",
            "GATEWAY": f"\t\treverse_proxy 127.0.0.1:{gateway_port}",
            "AUTH": f"\t\t\tforward_auth 127.0.0.1:{gateway_port} {{",
            "APP": f"\t\t\treverse_proxy 127.0.0.1:{app_port}",
        }))
        return [binary, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]

    process = ServerProcess("caddy", command, tmp)
    process.env = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config")}
    return process.start()
