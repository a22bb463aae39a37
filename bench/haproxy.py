"""HAProxy verifying the gateway's HS256 access token natively (``jwt_verify``, HAProxy >= 2.5), in front of
the benchmark upstream: what a proxy with JWT checks built in costs per request.

It checks what the gateway's own check cannot skip for a valid token (algorithm, signature, expiry and
audience) and injects ``X-User-Id`` from ``sub``; no revocation, no routes, no claim requirements.
One thread, like the single-worker gateway and nginx targets.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["haproxy_argv", "write_haproxy_conf"]


def write_haproxy_conf(directory: Path, port: int, upstream_port: int, secret: str, audience: str) -> Path:
    """A haproxy.cfg answering 401 unless the bearer token is a valid, unexpired HS256 token for ``audience``."""
    if '"' in secret or "\\" in secret:
        raise ValueError("the secret must not contain quotes or backslashes")
    conf = f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend jwt
    bind 127.0.0.1:{port}
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
    http-request deny status 401 unless {{ var(txn.alg) -m str HS256 }}
    http-request deny status 401 unless {{ var(txn.bearer),jwt_verify(txn.alg,"{secret}") -m int 1 }}
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
    http-request deny status 401 unless {{ var(txn.bearer),jwt_payload_query('$.aud') -m str {audience} }}
    http-request set-header X-User-Id %[var(txn.bearer),jwt_payload_query('$.sub')]
    default_backend upstream
backend upstream
    http-reuse always
    server up 127.0.0.1:{upstream_port}
"""
    path = directory / "haproxy.cfg"
    path.write_text(conf)
    return path


def haproxy_argv(config: Path) -> list[str]:
    """HAProxy in the foreground (``-db``), so the harness owns and stops the process."""
    return ["haproxy", "-db", "-f", str(config)]
