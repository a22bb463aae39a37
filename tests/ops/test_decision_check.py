"""`gateway decision-check URL` against running fronts: Debian's nginx and Caddy with the generated configs pass
(exit 0), and configs weakened by hand in ways the gateway cannot catch fail (exit 1), naming what got through.

The app is the example upstream (`python -m gateway.example_upstream`), which echoes what reached it: the
app-facing echo the command's documentation asks operators to place where the app is.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Callable, Iterator

import pytest

from gateway.config import GatewayConfig, load_config
from gateway.decision.configs import render
from tests.conftest import PASSWORDS, SECRET
from tests.support.fronts import caddy_front, nginx_front
from tests.support.processes import BOUND, ROOT, GatewayProcesses, ServerProcess, example_upstream

pytestmark = pytest.mark.slow

IDS = {"X-User-Id": "sub", "X-User-Roles": "roles"}


@dataclass
class Deployed:
    gateway_port: int
    config: GatewayConfig
    app: ServerProcess
    token: str
    cookie: str


@pytest.fixture(scope="module", params=["nginx", "caddy"])
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             users_file: Path) -> Iterator[Deployed]:
    front = request.param
    tmp = tmp_path_factory.mktemp(f"check-{front}")
    app = example_upstream(tmp, "echo").start()
    processes = GatewayProcesses(tmp)
    try:
        port = processes({
            "tokens": {"secret": SECRET, "issuer": "test-gw", "audience": "test-clients"},
            "users_file": str(users_file),
            "cookies": {"enabled": True, "secure": False},
            "trust_forwarded_headers": True,
            "decision": {"front": front},
            "routes": [
                {"name": "api", "prefix": "/api", "upstream": app.url, "headers": IDS},
                {"name": "ws", "prefix": "/ws", "upstream": app.url, "websocket": True, "headers": IDS},
                {"name": "public", "prefix": "/", "upstream": app.url, "auth": "none"},
            ],
        })
        token, cookie = _login(port)
        yield Deployed(port, load_config(processes.config_path(port)), app, token, cookie)
    finally:
        processes.stop_all()
        app.stop()


def _login(port: int) -> tuple[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/auth/token",
                                     json.dumps({"username": "bob", "password": PASSWORDS["bob"]}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=BOUND) as resp:
        jar = SimpleCookie()
        for header in resp.headers.get_all("Set-Cookie") or []:
            jar.load(header)
    return jar["gw_access"].value, f"gw_access={jar['gw_access'].value}"


def check(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "gateway", "decision-check", f"http://127.0.0.1:{port}", *args],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, stdin=subprocess.DEVNULL)


def _started(tmp: Path, d: Deployed, launch: Callable[[Path, GatewayConfig, int, int], ServerProcess]) -> ServerProcess:
    return launch(tmp, d.config, d.gateway_port, d.app.port)


def test_the_generated_config_passes(deployed: Deployed, tmp_path: Path):
    launch = nginx_front if deployed.config.decision and deployed.config.decision.front == "nginx" else caddy_front
    front = _started(tmp_path, deployed, launch)
    try:
        done = check(front.port, "--route", "/api", "--token", deployed.token, "--cookie", deployed.cookie,
                     "--websocket", "/ws/chat")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "nothing got through" in done.stderr and "THROUGH" not in done.stdout, done.stdout
        lines = done.stdout.splitlines()
        assert lines[0].split()[:3] == ["#", "request", "front"], lines[0]
        assert any("X_User_Id: gwcheck-root" in line and line.rstrip().endswith("ok") for line in lines), done.stdout
        assert any("forged token" in line and " 401 " in line for line in lines), done.stdout
        assert any("websocket handshake from https://" in line and " 403 " in line for line in lines), done.stdout
        public = check(front.port)  # a public route, no credentials: the header, path and host rows
        assert public.returncode == 0, public.stdout + public.stderr
    finally:
        front.stop()


def test_no_echo_behind_the_front_is_exit_2(deployed: Deployed, tmp_path: Path):
    launch = nginx_front if deployed.config.decision and deployed.config.decision.front == "nginx" else caddy_front
    front = _started(tmp_path, deployed, launch)
    try:
        done = check(front.port, "--route", "/api")  # no token: the gateway's 401, not an echo
        assert done.returncode == 2 and "not from an echo" in done.stderr, done.stdout + done.stderr
    finally:
        front.stop()


def nginx_weakened(tmp: Path, d: Deployed) -> ServerProcess:
    """The generated nginx config plus a hand-written location that proxies to the app without asking the gateway."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    assert binary, "nginx is not installed"

    def command(port: int, tmp: Path) -> list[str]:
        files = render("nginx", d.config, listen=f"127.0.0.1:{port}", gateway=f"127.0.0.1:{d.gateway_port}",
                       app=f"127.0.0.1:{d.app.port}", state_dir=str(tmp / "decisions"))
        site = files["nginx.conf"]
        anchor = "    location / {\n"
        assert anchor in site
        files["nginx.conf"] = site.replace(anchor, "    location /static/ {\n        proxy_pass http://app;\n    }\n\n"
                                           + anchor, 1)
        for name, text in files.items():
            (tmp / name).write_text(text)
        (tmp / "main.conf").write_text(
            f"daemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n proxy_temp_path {tmp}/proxy;\n"
            f" fastcgi_temp_path {tmp}/fastcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n"
            f" include {tmp}/nginx.conf;\n}}\n")
        return [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "main.conf")]

    return ServerProcess("nginx-weakened", command, tmp).start()


def caddy_weakened(tmp: Path, d: Deployed) -> ServerProcess:
    """The generated Caddyfile without its `request_header -*_*` line: the gateway, told its front is caddy,
    trusts Caddy to remove every name with "_" and cannot see that this one does not."""
    binary = shutil.which("caddy")
    assert binary, "caddy is not installed"

    def command(port: int, tmp: Path) -> list[str]:
        text = render("caddy", d.config, listen=f"127.0.0.1:{port}", gateway=f"127.0.0.1:{d.gateway_port}",
                      app=f"127.0.0.1:{d.app.port}")["Caddyfile"]
        line = "\trequest_header -*_*\n"
        assert line in text
        (tmp / "Caddyfile").write_text(text.replace(line, ""))
        return [binary, "run", "--config", str(tmp / "Caddyfile"), "--adapter", "caddyfile"]

    process = ServerProcess("caddy-weakened", command, tmp)
    process.env = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config")}
    return process.start()


def _through(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.rstrip().endswith("THROUGH")]


def test_a_weakened_config_fails_naming_the_rows(deployed: Deployed, tmp_path: Path):
    front_kind = deployed.config.decision.front if deployed.config.decision else ""
    if front_kind == "nginx":
        front = nginx_weakened(tmp_path, deployed)
        args = ["--route", "/static"]  # the location that never asks the gateway
    else:
        front = caddy_weakened(tmp_path, deployed)
        args = ["--route", "/api", "--token", deployed.token]
    try:
        done = check(front.port, *args)
        assert done.returncode == 1, done.stdout + done.stderr
        through = _through(done)
        assert any("X-User-Id: gwcheck-root" in line or "X_User-Id: gwcheck-root" in line for line in through), done.stdout
        assert "got through: #" in done.stderr and "User-Id: gwcheck-root" in done.stderr, done.stderr
        if front_kind == "nginx":  # nothing is decided there: overrides, addresses, paths, hosts all reach the app
            assert any("X-HTTP-Method-Override: DELETE" in line for line in through), done.stdout
            assert any("path /static/x;jsessionid=1" in line for line in through), done.stdout
        else:  # only names with "_" get through: the rest is still removed
            assert all("_" in line[5:64].split(":")[0] for line in through), through  # the request column
            assert not any("X-User-Id: gwcheck-root" in line for line in through), through
    finally:
        front.stop()
