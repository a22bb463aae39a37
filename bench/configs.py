"""Files the benchmark generates: gateway YAML, users file, nginx.conf.

The gateway config is meant to look like production, not like a toy: many
routes with the one under test near the end (a linear matcher pays for every
route before it), HS256 with a Redis store, role requirements and three
injected identity headers.  nginx gets the settings any competent operator
would use for a plain reverse proxy (upstream keep-alive, unbuffered request
bodies), so "gateway/nginx" compares against nginx at its ordinary best.
"""
from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher

__all__ = ["USERNAME", "PASSWORD", "API_PATH", "UPLOAD_PATH", "PUBLIC_PATH", "INJECTED",
           "write_users", "gateway_config", "write_gateway_config", "write_nginx_conf"]

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
API_PATH = "/api/v1/items/42?view=full"      # what wrk requests through each target
UPLOAD_PATH = "/upload/blob"                  # where the 1 GB stream goes
PUBLIC_PATH = "/public/v1/status"             # an auth: none route, isolates proxy cost
INJECTED = {"X-User-Id": "sub", "X-User-Roles": "roles", "X-User-Email": "email"}


def write_users(path: Path) -> None:
    """One user with a real argon2id hash (argon2-cffi defaults, as the gateway uses)."""
    users = {"users": {USERNAME: {
        "password_hash": PasswordHasher().hash(PASSWORD),
        "claims": {"roles": ["admin", "user"], "email": "alice@example.com", "tenant": "acme",
                   "scope": "read write"},
    }}}
    path.write_text(yaml.safe_dump(users, sort_keys=False))


def _filler_route(i: int, upstream: str) -> dict[str, Any]:
    """A route that never matches the benchmark paths but looks like a real service."""
    route: dict[str, Any] = {"name": f"svc{i:05d}", "prefix": f"/svc{i:05d}/v{1 + i % 3}",
                             "upstream": upstream, "auth": "required", "timeout": "30s"}
    if i % 2 == 0:
        route["methods"] = ["GET", "POST"]
    if i % 3 == 0:
        route["require"] = {"roles_any": ["admin", f"team{i % 7}"]}
    if i % 4 == 0:
        route["headers"] = dict(INJECTED)
    if i % 5 == 0:
        route["strip_prefix"] = True
    if i % 11 == 0:
        route["host"] = f"svc{i}.internal.example.com"
    if i % 13 == 0:
        route.pop("require", None)
        route.pop("headers", None)
        route["auth"] = "optional" if i % 2 else "none"
    return route


def _bench_routes(upstream: str) -> list[dict[str, Any]]:
    """The three routes the benchmark actually hits."""
    return [
        {"name": "public", "prefix": "/public", "methods": ["GET"], "upstream": upstream,
         "auth": "none"},
        {"name": "upload", "prefix": "/upload", "methods": ["POST", "PUT"], "upstream": upstream,
         "auth": "required", "headers": dict(INJECTED), "timeout": "600s"},
        {"name": "api", "prefix": "/api", "methods": ["GET", "POST"], "upstream": upstream,
         "auth": "required", "require": {"roles_any": ["user"]}, "headers": dict(INJECTED),
         "timeout": "30s"},
    ]


def gateway_config(port: int, upstream: str, redis_url: str | None, n_routes: int,
                   prefix: str = "gwbench:", store_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config as a dict: ``n_routes`` routes in all, the ``/api`` one second to last.

    ``store_extra`` adds store settings (e.g. ``revocation_cache``) to the Redis store.
    """
    fillers = [_filler_route(i, upstream) for i in range(max(n_routes - 4, 0))]
    routes = fillers + _bench_routes(upstream) + [
        {"name": "zz-last", "prefix": "/zz-last", "upstream": upstream, "auth": "required"}]
    store = ({"backend": "redis", "url": redis_url, "prefix": prefix, **(store_extra or {})} if redis_url
             else {"backend": "memory"})
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "tokens": {"algorithm": "HS256", "secret": "${GATEWAY_SECRET}", "issuer": "gateway",
                   "audience": "gateway-clients", "access_lifetime": "2h",
                   "refresh_lifetime": "14d", "leeway": "30s", "refresh_grace": "10s",
                   "rotate_refresh": True},
        "store": store,
        "users_file": "users.yaml",
        "identity_header_prefixes": ["X-User-", "X-Auth-"],
        "routes": routes,
    }


def write_gateway_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_nginx_conf(tmp: Path, port: int, upstream_port: int) -> Path:
    """A plain nginx reverse proxy, one worker (the gateway targets are per worker too).

    It writes an access log (buffered, Debian's default format) because the
    gateway writes one per request too; comparing a logging gateway with a
    silent nginx would overstate the gateway's own cost.
    """
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {tmp}/access.log combined buffer=64k flush=1s;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream benchup {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        client_max_body_size 0;
        location / {{
            proxy_pass http://benchup;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
        }}
    }}
}}
"""
    path = tmp / "nginx.conf"
    path.write_text(conf)
    return path
