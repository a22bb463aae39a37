"""A real stack for browser tests: the gateway as a subprocess (its CLI), and one in-process site.

The site (aiohttp, on the test's event loop) plays two parts: it serves the pages, axios and the
seed clients (reached through a gateway route with ``auth: none``, or directly as another
origin), and it is the protected upstream API (``/api/...``, reached through the gateway only).
Refreshes are counted at the gateway, from its JSON access log.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import yaml
from aiohttp import web

from harness import AXIOS_ESM, AXIOS_UMD, BROWSER_DIR, free_port, wait_http
from tests.support.processes import ServerProcess, gateway_command

SEEDS = BROWSER_DIR / "seeds"
SNIPPETS = ("axios_interceptors.js", "axios_cookie_mode.js")  # the documented axios recipes
PASSWORD = "correct horse battery staple"
SECRET = "browser-secret-" + "x" * 40
USERS = {"alice": {"roles": ["user"], "email": "alice@example.com"}}

PRELUDE = r"""
window.addEventListener('unhandledrejection', (e) => {
  if (window.__result === undefined) window.__result = { error: 'unhandledrejection: ' + (e.reason && e.reason.stack || e.reason) };
});
window.sleep = (ms) => new Promise((r) => setTimeout(r, ms));
window.mark = (name) => fetch('/app/mark/' + name);   // a marker line in the gateway's access log
window.run = async (fn) => {
  try { window.__result = await fn(); }
  catch (e) { window.__result = { error: String(e && e.stack || e) }; }
};
"""


@dataclass
class Site:
    """Pages by name (``__GATEWAY__`` and ``__PASSWORD__`` filled in when served) and API hits."""

    pages: dict[str, str]
    gateway: str = ""
    api_hits: list[dict[str, Any]] = field(default_factory=list)
    password: str = PASSWORD

    def fill(self, text: str) -> str:
        return text.replace("__GATEWAY__", self.gateway).replace("__PASSWORD__", self.password)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/app/page/{name}", self._page)
        app.router.add_get("/app/seeds/{path:.+}", self._seed)
        for name in SNIPPETS:
            app.router.add_get(f"/app/snippets/{name}", self._file(BROWSER_DIR / name))
        app.router.add_get("/app/vendor/axios.min.js", self._file(AXIOS_UMD))
        app.router.add_get("/app/vendor/axios.mjs", self._file(AXIOS_ESM))
        app.router.add_get("/app/mark/{name}", self._mark)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        return app

    async def _page(self, request: web.Request) -> web.Response:
        body = self.pages[request.match_info["name"]]
        html = f"<!doctype html><meta charset=utf-8><title>t</title><link rel=icon href=data:,>\n<script>{PRELUDE}</script>\n{body}"
        return web.Response(text=self.fill(html), content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _seed(self, request: web.Request) -> web.Response:
        path = (SEEDS / request.match_info["path"]).resolve()
        if not path.is_relative_to(SEEDS) or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(text=self.fill(path.read_text()), content_type="text/javascript")

    @staticmethod
    def _file(path: Path):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=path.read_bytes(), content_type="text/javascript")
        return handler

    async def _mark(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _api(self, request: web.Request) -> web.Response:
        hit = {"method": request.method, "path": request.path, "user": request.headers.get("X-User-Id"),
               "cookie": request.headers.get("Cookie"), "body": (await request.read()).decode()}
        self.api_hits.append(hit)
        if request.path.rstrip("/") == "/api/admin/roles":  # seed 000's page lists roles
            return web.json_response(["admin", "user", "editor"])
        return web.json_response(hit)


def gateway_config(site_port: int, **extra: Any) -> dict[str, Any]:
    """Short-lived access tokens (2 s, no leeway), the site behind /app (public) and /api (protected)."""
    site = f"http://127.0.0.1:{site_port}"
    config: dict[str, Any] = {
        "tokens": {"secret": SECRET, "access_lifetime": "2s", "refresh_lifetime": "1h", "leeway": "0s", "refresh_grace": "0s"},
        "store": {"backend": "memory"},
        "users_file": "users.yaml",
        "routes": [
            {"name": "app", "prefix": "/app", "upstream": site, "auth": "none"},
            {"name": "api", "prefix": "/api", "upstream": site, "headers": {"X-User-Id": "sub"}},
        ],
    }
    config.update(extra)
    return config


@dataclass
class RunningGateway:
    url: str
    log: Path
    skip: int = 0  # access-log entries before this one are not this view's

    def since_now(self) -> "RunningGateway":
        """The same gateway, its access log read from the next entry on (one gateway, several pages)."""
        return RunningGateway(self.url, self.log, self.skip + len(self.access_log()))

    def access_log(self) -> list[dict[str, Any]]:
        """The gateway's JSON access-log lines, in order."""
        entries = []
        for line in self.log.read_text(errors="replace").splitlines():
            start = line.find("{")
            try:
                entry = json.loads(line[start:]) if start >= 0 else None
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and {"method", "path", "status"} <= entry.keys():
                entries.append(entry)
        return entries[self.skip:]

    def between(self, start: str, end: str) -> list[dict[str, Any]]:
        """Access-log entries between two ``mark()`` calls of the page; CORS preflights (OPTIONS, answered
        by the gateway itself, cached or not by the browser) left out."""
        entries = self.access_log()
        paths = [e["path"] for e in entries]
        chosen = entries[paths.index(f"/app/mark/{start}") + 1: paths.index(f"/app/mark/{end}")]
        return [e for e in chosen if e["method"] != "OPTIONS"]

    def hits(self, path: str, entries: list[dict[str, Any]] | None = None) -> list[int]:
        """Statuses of the requests to ``path`` (trailing slash ignored)."""
        return [e["status"] for e in (entries if entries is not None else self.access_log())
                if e["path"].rstrip("/") == path.rstrip("/")]


@contextlib.asynccontextmanager
async def start_gateway(tmp_path: Path, config: dict[str, Any]) -> AsyncIterator[RunningGateway]:
    """Run ``gateway run`` on a free port until the generator is closed."""
    from gateway.sources.users import hash_password

    port = free_port()
    users = {name: {"password_hash": hash_password(PASSWORD), "claims": claims} for name, claims in USERS.items()}
    (tmp_path / "users.yaml").write_text(yaml.safe_dump({"users": users}))
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({**config, "listen": {"host": "127.0.0.1", "port": port}}))
    async with run_gateway(path, port, tmp_path / "gateway.log") as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def run_gateway(path: Path, port: int, log: Path, env: dict[str, str] | None = None) -> AsyncIterator[RunningGateway]:
    """Run ``gateway run --config path`` (listening on ``port``, ``env`` added) until the generator is closed."""
    gateway = ServerProcess(log.stem, lambda _port, _tmp: [*gateway_command(), "run", "--config", str(path)], log.parent,
                            port=port, env={**(env or {}), "PYTHONUNBUFFERED": "1"}).start()
    try:
        await wait_http(f"{gateway.url}/healthz", gateway.proc, gateway.log_path)
        yield RunningGateway(gateway.url, gateway.log_path)
    finally:
        gateway.stop()


@contextlib.asynccontextmanager
async def factor_gateway(tmp_path: Path, secret: str, password: str, **config: Any) -> AsyncIterator[tuple[str, Path]]:
    """The gateway (its CLI) of the second-factor browser tests, its address and its log: alice with ``password`` in a users
    file, the credentials store in an SQLite file of ``tmp_path``, ``public_url`` on ``http://localhost`` (a valid
    WebAuthn RP ID, while it listens on 127.0.0.1); ``config`` sets the other top-level keys (``cookies``,
    ``second_factor``, ``routes``)."""
    from gateway.sources.users import hash_password

    port = free_port()
    users = {"alice": {"password_hash": hash_password(password), "claims": {"roles": ["user"]}}}
    (tmp_path / "users.yaml").write_text(json.dumps({"users": users}))
    (tmp_path / "gateway.yaml").write_text(json.dumps({
        "listen": {"host": "127.0.0.1", "port": port},
        "public_url": f"http://localhost:{port}",
        "tokens": {"secret": secret, "issuer": "gateway", "audience": "gateway-clients", "leeway": "0s"},
        "users_file": "users.yaml",
        "credentials": {"url": f"sqlite:///{tmp_path / 'credentials.db'}", "keys": [{"id": "k1", "secret": "k" * 40}]},
        **config,
    }))
    async with run_gateway(tmp_path / "gateway.yaml", port, tmp_path / "gateway.log") as gateway:
        yield f"http://localhost:{port}", gateway.log
