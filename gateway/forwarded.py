"""What the client used, as the gateway's own peer or trusted proxies in front of it report it.

The one definition of the client's address (access log, login throttle,
per-client limits, rate limits) and of the scheme and host it used (upstream
forwarding headers, CORS same-origin, discovery). Forwarded values count only
from a trusted peer (``net.TrustedProxies``: ``trusted_proxies``, or every
peer with ``trust_forwarded_headers: true`` and no list).

The client's address behind trusted proxies is the rightmost hop of
``X-Forwarded-For`` (without one, the ``for=`` values of ``Forwarded``) that
is not itself a trusted proxy: each trusted proxy appends the address it saw,
so walking left through trusted hops reaches the first address no trusted
proxy vouches for; everything left of it is whatever the client sent. A hop
that is not an address ends the walk at the trusted hop to its right.
"""
from __future__ import annotations

from aiohttp import web

from gateway.context import CLIENT, Client, state
from gateway.errors import GatewayError
from gateway.net import DEFAULT_PORTS, Host, TrustedProxies, ip_bucket, parse_address, parse_host
from gateway.target import request_host

__all__ = ["client", "client_ip", "client_origin", "forwarded_by_proxy", "identify"]

MAX_HOPS = 32  # hops read from the right; a longer chain is cut there (a trusted proxy still appended the last)


def identify(request: web.Request, proxies: TrustedProxies) -> Client:
    """The request's ``Client``: the one application of the trusted-forwarding rule to a request."""
    address = client_ip(request, proxies)
    return Client(address, ip_bucket(address), forwarded_by_proxy(request, proxies))


def client(request: web.Request) -> Client:
    """The request's client, as the admission middleware identified it (the peer alone, for a request that did not
    pass it: nothing forwarded is believed then)."""
    found: Client | None = state(request).get(CLIENT)
    if found is not None:
        return found
    peer = request.remote or "unknown"
    return Client(peer, ip_bucket(peer), False)


def forwarded_by_proxy(request: web.Request, proxies: TrustedProxies) -> bool:
    """Whether this request's peer is a trusted proxy, so its forwarding headers count."""
    return proxies.trusts(request.remote)


def _hops(request: web.Request) -> list[str]:
    """The reported chain, nearest hop last: X-Forwarded-For, else the ``for=`` values of Forwarded."""
    forwarded_for = request.headers.getall("X-Forwarded-For", [])
    if forwarded_for:
        return ",".join(forwarded_for).split(",")[-MAX_HOPS:]
    hops = []
    for element in ",".join(request.headers.getall("Forwarded", [])).split(",")[-MAX_HOPS:]:
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(value)
    return hops


def client_ip(request: web.Request, trust_forwarded: TrustedProxies) -> str:
    """The peer address; behind trusted proxies, the nearest address none of them vouches for."""
    peer = request.remote or "unknown"
    if not trust_forwarded.trusts(peer):
        return peer
    client = peer
    for hop in reversed(_hops(request)):
        address = parse_address(hop)
        if address is None:
            break
        client = address
        if not trust_forwarded.is_proxy(address):
            break
    return client


def _single(request: web.Request, name: str) -> str | None:
    """The one value of a forwarded header; two lines of it are a 400, as a list in one line is."""
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise GatewayError.bad_request(f"{name} is given more than once")
    return values[0] if values else None


def client_origin(request: web.Request, host: Host | None = None) -> tuple[str, Host]:
    """The scheme and host the client used: the request's own, or from a trusted proxy X-Forwarded-Proto/-Host.

    Forwarded values must be a single ``http``/``https`` and a single valid host
    (a list is a 400): they reach upstreams and discovery documents as they are.
    ``host`` is the request's own, when already parsed.
    """
    scheme = request.scheme
    if client(request).from_proxy:
        proto = _single(request, "X-Forwarded-Proto")
        if proto is not None:
            scheme = proto.strip().lower()
            if scheme not in DEFAULT_PORTS:
                raise GatewayError.bad_request("X-Forwarded-Proto must be http or https")
        forwarded_host = _single(request, "X-Forwarded-Host")
        if forwarded_host is not None:
            try:
                return scheme, parse_host(forwarded_host, scheme)
            except ValueError:
                raise GatewayError.bad_request("X-Forwarded-Host is not a single valid host") from None
    return scheme, host if host is not None else request_host(request)
