"""Helpers for the tests that drive a real `gateway run` process: a gated upstream, bounded polling,
and launchers for the real third-party upstream servers of tests/upstreams/."""
from __future__ import annotations

import asyncio
import base64
import http.client
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import pytest
import redis
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port  # the one allocator; tests import it from here or tests.conftest

ROOT = Path(__file__).resolve().parent.parent.parent
BOUND = 20.0  # seconds: no wait in these tests is longer
START_BOUND = 45.0  # seconds a server may take to start: many start at once on 2 loaded cores


@dataclass
class GatedUpstream:
    """An upstream whose answers wait until the test releases them: in-flight requests on demand."""

    url: str = ""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    body: bytes = b"finished " * 2000

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            self.started.set()
            await self.release.wait()
            return web.Response(body=self.body, headers={"X-Seen-User": request.headers.get("X-User-Id", "")})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        return app


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = BOUND) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- real upstream servers that nobody here wrote (tests/upstreams/), started on free ports ---------

UPSTREAMS = Path(__file__).resolve().parent.parent / "upstreams"
INSTALL_HINT = "run the README's test command (make test), which installs it via scripts/install-test-deps.sh"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class ServerProcess:
    """A real server process on a free loopback port: ``command(port, tmp)`` says how to start it.

    Its output goes to ``<tmp>/<name>.log``, quoted when it fails to start; ``stop()`` ends it.
    """

    name: str
    command: Callable[[int, Path], list[str]]
    tmp: Path
    port: int = 0  # set before start() to use that (free) port: a gateway configured first can point at it
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.tmp / f"{self.name}.log"

    def start(self, attempts: int = 3) -> "ServerProcess":
        preset = self.port
        for _ in range(1 if preset else attempts):  # a server that fails to start may just be slow: another try
            self.port = preset or free_port()
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(self.command(self.port, self.tmp), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                             stdin=subprocess.DEVNULL, env={**os.environ, **self.env})
            deadline = time.monotonic() + START_BOUND
            while self.proc.poll() is None and not _listening(self.port) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.proc.poll() is None and _listening(self.port):
                return self
            self.stop()
        pytest.fail(f"{self.name} did not start on 127.0.0.1:{self.port}:\n{self.log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _require(binary: str | None, what: str) -> str:
    if binary is None:
        pytest.fail(f"{what} is not installed: {INSTALL_HINT}")
    return binary


def example_upstream(tmp: Path, name: str = "upstream", port: int = 0, env: dict[str, str] | None = None) -> ServerProcess:
    """The example upstream (``python -m gateway.example_upstream``), not started yet: it echoes the method, path,
    query and every header that reached it."""
    return ServerProcess(name, lambda port, _: [sys.executable, "-m", "gateway.example_upstream", "--port", str(port)],
                         tmp, port=port, env=env or {})


def gunicorn_flask(tmp: Path) -> ServerProcess:
    """tests/upstreams/flask_app.py on gunicorn (pinned 21.2.0 by the `test` extra: CGI-style header names)."""
    for module in ("gunicorn", "flask"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed in this interpreter: {INSTALL_HINT} (the `test` extra)")
    if (version := importlib.metadata.version("gunicorn")) != "21.2.0":  # 22+ drops X_User_Id itself
        pytest.fail(f"gunicorn {version} instead of 21.2.0, the CGI-style merging the tests need: {INSTALL_HINT}")
    return ServerProcess("gunicorn", lambda port, _: [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--chdir", str(UPSTREAMS),
        "--graceful-timeout", "2", "flask_app:app"], tmp).start()


def express(tmp: Path) -> ServerProcess:
    """tests/upstreams/express/server.js on node, its packages pinned by package-lock.json (npm ci)."""
    node = _require(shutil.which("node"), "node")
    if not (UPSTREAMS / "express" / "node_modules" / "express").is_dir():
        pytest.fail(f"tests/upstreams/express/node_modules is missing: {INSTALL_HINT} (npm ci)")
    return ServerProcess("express", lambda port, _: [node, str(UPSTREAMS / "express" / "server.js"), str(port)], tmp).start()


def stdlib_server(tmp: Path) -> ServerProcess:
    """tests/upstreams/stdlib_app.py: http.server routing on unquote(urlparse(path).path)."""
    return ServerProcess("stdlib", lambda port, _: [sys.executable, str(UPSTREAMS / "stdlib_app.py"), str(port)], tmp).start()


def nginx(tmp: Path) -> ServerProcess:
    """Debian's nginx from tests/upstreams/nginx.conf.template: two name-based vhosts, everything under ``tmp``."""
    binary = _require(shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin"), "nginx (Debian's package)")

    def command(port: int, tmp: Path) -> list[str]:
        conf = tmp / "nginx.conf"
        template = (UPSTREAMS / "nginx.conf.template").read_text()
        conf.write_text(template.replace("@PORT@", str(port)).replace("@TMP@", str(tmp)))
        return [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]

    return ServerProcess("nginx", command, tmp).start()


# -- the framework recipes of docs/recipes.md (tests/upstreams/recipes/), run by tests/ops/test_recipes.py -----

RECIPES = UPSTREAMS / "recipes"


def _require_modules(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed in this interpreter: {INSTALL_HINT} (the `test` extra)")


def _recipe_env(env: dict[str, str]) -> dict[str, str]:
    return {"PYTHONPATH": str(RECIPES), "PYTHONDONTWRITEBYTECODE": "1", **env}


def django_recipe(tmp: Path, mode: str, env: dict[str, str], port: int = 0) -> ServerProcess:
    """tests/upstreams/recipes/django_recipe on Django's own server (``runserver --noreload``), after ``migrate``
    into a throwaway SQLite file; ``mode``: ``header`` (X-User-Id) or ``signed`` (X-Gateway-Identity)."""
    _require_modules("django", "jwt")
    env = _recipe_env({"DJANGO_SETTINGS_MODULE": "django_recipe.settings", "GATEWAY_MODE": mode,
                       "RECIPE_DB": str(tmp / f"django-{mode}.sqlite3"), **env})
    migrate = subprocess.run([sys.executable, "-m", "django", "migrate", "-v", "0"], env={**os.environ, **env},
                             capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return ServerProcess(f"django-{mode}", lambda port, _: [
        sys.executable, "-m", "django", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"], tmp, port=port,
        env=env).start()


def flask_recipe(tmp: Path, env: dict[str, str], port: int = 0) -> ServerProcess:
    """tests/upstreams/recipes/flask_recipe.py on gunicorn."""
    _require_modules("gunicorn", "flask", "jwt")
    return ServerProcess("flask-recipe", lambda port, _: [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--chdir", str(RECIPES),
        "--graceful-timeout", "2", "flask_recipe:app"], tmp, port=port, env=_recipe_env(env)).start()


def fastapi_recipe(tmp: Path, env: dict[str, str], port: int = 0) -> ServerProcess:
    """tests/upstreams/recipes/fastapi_recipe.py on uvicorn."""
    _require_modules("fastapi", "uvicorn", "jwt")
    return ServerProcess("fastapi-recipe", lambda port, _: [
        sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--app-dir", str(RECIPES),
        "--no-access-log", "fastapi_recipe:app"], tmp, port=port, env=_recipe_env(env)).start()


def express_recipe(tmp: Path, env: dict[str, str], port: int = 0) -> ServerProcess:
    """tests/upstreams/recipes/express/server.mjs on node, express and jose pinned by its package-lock.json (npm ci)."""
    node = _require(shutil.which("node"), "node")
    if not (RECIPES / "express" / "node_modules" / "jose").is_dir():
        pytest.fail(f"tests/upstreams/recipes/express/node_modules is missing: {INSTALL_HINT} (npm ci)")
    return ServerProcess("express-recipe", lambda port, _: [node, str(RECIPES / "express" / "server.mjs"), str(port)], tmp,
                         port=port, env=env).start()


def php_fpm(tmp: Path) -> ServerProcess:
    """Debian's PHP-FPM from tests/upstreams/recipes/php/php-fpm.conf.template, in the foreground on a loopback port
    (``-R``: the tests may run as root, as CI does)."""
    binary = shutil.which("php-fpm") or next(iter(sorted(Path("/usr/sbin").glob("php-fpm*"))), None)
    binary = _require(str(binary) if binary else None, "php-fpm (Debian's php-fpm package)")

    def command(port: int, tmp: Path) -> list[str]:
        conf = tmp / "php-fpm.conf"
        template = (RECIPES / "php" / "php-fpm.conf.template").read_text()
        conf.write_text(template.replace("@PORT@", str(port)).replace("@TMP@", str(tmp)))
        return [binary, "--nodaemonize", "--fpm-config", str(conf), *(["-R"] if os.getuid() == 0 else [])]

    return ServerProcess("php-fpm", command, tmp).start()


PHP_ECHO = UPSTREAMS / "php_echo"  # nginx (underscores_in_headers on) + PHP echoing its $_SERVER: merges "_" and "-"


def nginx_php(tmp: Path, fpm_port: int, port: int = 0, root: Path = RECIPES / "php") -> ServerProcess:
    """Debian's nginx from ``root``/nginx.conf.template (default: the recipe's, tests/upstreams/recipes/php/), in
    front of PHP-FPM on ``fpm_port``; ``root=PHP_ECHO``: an app that shows every header PHP saw."""
    binary = _require(shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin"), "nginx (Debian's package)")

    def command(port: int, tmp: Path) -> list[str]:
        conf = tmp / "nginx-php.conf"
        template = (root / "nginx.conf.template").read_text()
        conf.write_text(template.replace("@PORT@", str(port)).replace("@TMP@", str(tmp)).replace("@FPM@", str(fpm_port))
                        .replace("@ROOT@", str(root)))
        return [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]

    return ServerProcess("nginx-php", command, tmp, port=port).start()


# -- clients that write requests byte for byte ----------------------------------------------------

@dataclass
class RawReply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def upstream(self) -> str | None:
        """Which app of tests/upstreams/ answered (each marks its answers with X-Upstream); None: nobody did."""
        return self.headers.get("X-Upstream")

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, method: str, target: str, fields: Sequence[tuple[str, str]] = (),
                host: str | None = None) -> RawReply:
    """One HTTP/1.1 request to 127.0.0.1:``port`` written byte for byte: header names, Host and path
    exactly as given (a client library would normalise them). ``host`` None: ``127.0.0.1:port``."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host if host is not None else f'127.0.0.1:{port}'}"]
    lines += [f"{name}: {value}" for name, value in fields] + ["Content-Length: 0", "Connection: close"]
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        return RawReply(resp.status, resp.headers, resp.read())


def websocket_handshake(port: int, target: str, headers: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
    """A websocket handshake written byte for byte (header names exactly as given) to 127.0.0.1:``port``.

    Returns the status and, after a 101, the first message (a text frame), else the response body.
    """
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13",
             *(f"{name}: {value}" for name, value in headers)]
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock, sock.makefile("rb") as reader:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, length = int(reader.readline().split()[1]), 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            length = int(value) if name.strip().lower() == "content-length" else length
        if status != 101:
            return status, reader.read(length)
        first, second = reader.read(2)
        size = second & 0x7F
        if size >= 126:
            size = int.from_bytes(reader.read(2 if size == 126 else 8), "big")
        assert first & 0x0F == 0x1, f"the first websocket frame is not a text message (opcode {first & 0x0F})"
        return status, reader.read(size)


def sample(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value for family in text_string_to_metric_families(text) for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


# -- the gateway's own launchers (re-exported by tests/conftest.py) ------------------------

def wait_for_port(port: int, timeout: float = START_BOUND) -> None:  # a loaded machine starts servers slowly
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class RedisServer:
    """A throwaway redis-server the tests own: start, stop and restart it at will."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.args = args  # extra redis-server options, e.g. ("--appendonly", "yes") to survive a restart
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run the README's test command (make test)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
             *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


def gateway_command() -> list[str]:
    """How end-to-end tests start the real gateway: the installed CLI of this interpreter."""
    return [sys.executable, "-m", "gateway"]


class GatewayProcesses:
    """Starts ``gateway run`` subprocesses from config dicts; calling it returns the port.

    ``procs[port]`` is the process, ``config_path(port)`` its config file (rewrite
    it to test a reload) and ``log(port)`` everything it printed. One worker
    unless a test passes ``--workers``.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def __call__(self, raw: dict[str, Any], *extra_args: str, port: int | None = None) -> int:
        """``port``: chosen beforehand when the config must name it (``public_url``)."""
        port = port or free_port()
        raw = {**raw, "listen": {"host": "127.0.0.1", "port": port}}
        path = self.config_path(port)
        path.write_text(yaml.safe_dump(raw))
        with open(self.tmp / f"gateway-{port}.log", "wb") as log:
            proc = subprocess.Popen([*gateway_command(), "run", "--config", str(path), *extra_args],
                                    stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                    env={**os.environ, "GATEWAY_WORKERS": "1"})
        self.procs[port] = proc
        deadline = time.monotonic() + START_BOUND
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not start (exit {proc.poll()}):\n{self.log(port)}")
            time.sleep(0.05)
        return port

    def config_path(self, port: int) -> Path:
        return self.tmp / f"gateway-{port}.yaml"

    def log(self, port: int) -> str:
        return (self.tmp / f"gateway-{port}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

