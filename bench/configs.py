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
           "write_users", "gateway_config", "write_gateway_config", "write_nginx_conf", "write_haproxy_conf"]

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
                   "rotate_refresh": True,
                   # the refresh scenarios log one user in hundreds of times: the default cap (25) would
                   # revoke the oldest sessions, the benchmark's own access token among them
                   "max_sessions_per_user": 100_000},
        "store": store,
        "users_file": "users.yaml",
        "identity_header_prefixes": ["X-User-", "X-Auth-"],
        # every wrk connection comes from 127.0.0.1: the default per-address cap (128 requests in
        # progress) would answer 429 at 256 connections
        "limits": {"max_requests_per_client": 4096},
        "routes": routes,
    }


def write_gateway_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_nginx_conf(tmp: Path, port: int, upstream_port: int, auth_port: int | None = None) -> Path:
    """A plain nginx reverse proxy, one worker (the gateway targets are per worker too).

    It writes an access log (buffered, Debian's default format) because the
    gateway writes one per request too; comparing a logging gateway with a
    silent nginx would overstate the gateway's own cost.

    With ``auth_port``, every request first asks the gateway on that port
    (``auth_request`` to ``/auth/me``, over keep-alive connections, no caching):
    the way one puts the gateway behind nginx today, before a decision mode.
    """
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    auth_upstream = auth_request = auth_location = ""
    if auth_port is not None:
        auth_upstream = f"upstream benchauth {{ server 127.0.0.1:{auth_port}; keepalive 128; }}"
        auth_request = "auth_request /_gateway_auth;"
        auth_location = """location = /_gateway_auth {
            internal;
            proxy_pass http://benchauth/auth/me;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }"""
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
    {auth_upstream}
    server {{
        listen 127.0.0.1:{port} reuseport;
        client_max_body_size 0;
        location / {{
            {auth_request}
            proxy_pass http://benchup;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
        }}
        {auth_location}
    }}
}}
"""
    path = tmp / "nginx.conf"
    path.write_text(conf)
    return path


def write_haproxy_conf(tmp: Path, port: int, upstream_port: int, secret: str) -> Path:
    """HAProxy 2.6 verifying the gateway's HS256 token itself (``jwt_verify``), one thread, one process.

    Per request: bearer token present, ``alg`` HS256, signature valid, ``exp`` in
    the future, ``iss`` and ``aud`` the gateway's; else 401. Then the identity
    headers are set from the claims (replacing any the client sent) and the
    request goes to the same upstream over kept-alive connections. It logs every
    request (``option httplog`` to stdout), as nginx and the gateway do.
    """
    deny = "http-request return status 401 content-type application/json string '{\"code\":\"token_not_valid\"}'"
    conf = f"""
global
    nbthread 1
    maxconn 4096
    log stdout format raw local0 info
defaults
    mode http
    log global
    option httplog
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend bench
    bind 127.0.0.1:{port}
    http-request del-header X-User-Roles
    http-request set-var(txn.bearer) http_auth_bearer
    {deny} unless {{ var(txn.bearer) -m found }}
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
    {deny} unless {{ var(txn.alg) -m str HS256 }}
    {deny} unless {{ var(txn.bearer),jwt_verify(txn.alg,"{secret}") -m int 1 }}
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
    http-request set-var(txn.now) date()
    {deny} unless {{ var(txn.exp),sub(txn.now) -m int gt 0 }}
    {deny} unless {{ var(txn.bearer),jwt_payload_query('$.iss') -m str gateway }}
    {deny} unless {{ var(txn.bearer),jwt_payload_query('$.aud') -m str gateway-clients }}
    http-request set-header X-User-Id %[var(txn.bearer),jwt_payload_query('$.sub')]
    http-request set-header X-User-Email %[var(txn.bearer),jwt_payload_query('$.email')]
    default_backend upstream
backend upstream
    server up 127.0.0.1:{upstream_port} maxconn 256
"""
    path = tmp / "haproxy.cfg"
    path.write_text(conf)
    return path
