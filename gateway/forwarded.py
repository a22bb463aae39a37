"""What the client used, as the gateway's own peer or trusted proxies in front of it report it.

The one definition of the client's address (access log, login throttle,
per-client limits, rate limits) and of the scheme and host it used (upstream
forwarding headers, CORS same-origin, discovery). Forwarded values count only
with ``trust_forwarded_headers: true``.
"""
from __future__ import annotations

from aiohttp import web

from gateway.errors import GatewayError
from gateway.net import DEFAULT_PORTS, Host, parse_host
from gateway.target import request_host

__all__ = ["client_ip", "client_origin"]


def client_ip(request: web.Request, trust_forwarded: bool) -> str:
    """The peer address; with trusted proxies, the address the nearest proxy saw.

    Only the last ``X-Forwarded-For`` entry is used: it was appended by the
    proxy in front of the gateway, every earlier entry is whatever the client sent.
    """
    if trust_forwarded:
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        last = forwarded.rsplit(",", 1)[-1].strip()[:64]
        if last:
            return last
    return request.remote or "unknown"


def client_origin(request: web.Request, trust_forwarded: bool, host: Host | None = None) -> tuple[str, Host]:
    """The scheme and host the client used: the request's own, or with trusted proxies X-Forwarded-Proto/-Host.

    Forwarded values must be a single ``http``/``https`` and a single valid host
    (a list is a 400): they reach upstreams and discovery documents as they are.
    ``host`` is the request's own, when already parsed.
    """
    scheme = request.scheme
    if trust_forwarded:
        proto = request.headers.get("X-Forwarded-Proto")
        if proto is not None:
            scheme = proto.strip().lower()
            if scheme not in DEFAULT_PORTS:
                raise GatewayError.bad_request("X-Forwarded-Proto must be http or https")
        forwarded_host = request.headers.get("X-Forwarded-Host")
        if forwarded_host is not None:
            try:
                return scheme, parse_host(forwarded_host, scheme)
            except ValueError:
                raise GatewayError.bad_request("X-Forwarded-Host is not a single valid host") from None
    return scheme, host if host is not None else request_host(request)
