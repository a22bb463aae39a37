"""The original request a front proxy asks about: read from the headers its ``decision.front`` sends, nothing else.

| front | method | target (path and query) | host |
|---|---|---|---|
| nginx (``auth_request``) | ``X-Original-Method`` | ``X-Original-URI`` | ``Host`` |
| traefik (``forwardAuth``), caddy (``forward_auth``), haproxy (Lua) | ``X-Forwarded-Method`` | ``X-Forwarded-Uri`` | ``X-Forwarded-Host`` |
| envoy (ext_authz HTTP service) | the request's own | what follows ``decision.path`` | ``Host`` |

A header that is missing or given twice is a 400: a decision is never about
the decision request itself. The peer must be in ``decision.allow_from``
(its own address, never a forwarded one), else 404, as if nothing were here.
The original request is then a clone of the decision request with the
original method and Host, without the describing headers.

A websocket handshake is recognised by ``Sec-WebSocket-Key`` or
``Sec-WebSocket-Version`` even where the front drops ``Upgrade`` and
``Connection`` (hop-by-hop to it): the clone says ``Upgrade: websocket`` again,
so the handshake passes the same checks as in proxy mode (the origin of a
cookie-authenticated handshake included) and is never cached.

The front removes what proxy mode would not pass (its generated config,
``gateway decision-config``); ``unstripped`` names what the front would let
through nonetheless, and the decision is refused.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from gateway.config.boundary import ClientBoundary
from gateway.config.decision import Decision
from gateway.decision.fronts import FRONTS
from gateway.decision.fronts.nginx import REASK
from gateway.errors import GatewayError
from gateway.upstream.headers import remember

__all__ = ["Front", "Original"]

_METHOD = re.compile(r"^[A-Z][A-Z-]{0,31}$")  # what llhttp accepts on a request line, in proxy mode too
_TARGET = re.compile(r"^/[\x21-\x7e]*$")  # origin-form, printable ASCII, no space: target.parse_target checks the rest
_PEERS = 1024  # remembered peer addresses, forgotten all at once when full
_NOT_COPIED = frozenset({"upgrade", "connection", "content-length", "transfer-encoding"})


@dataclass(frozen=True, slots=True)
class Original:
    """The request the front proxy asks about: a clone carrying its method and Host, and its raw target."""

    request: web.Request
    target: str


class Front:
    """``decision`` settings made usable: which path answers, who may ask, where the original request is read."""

    def __init__(self, settings: Decision, boundary: ClientBoundary) -> None:
        self.settings = settings
        self.kind = FRONTS[settings.front]
        self.boundary = boundary
        # Caddy 2.6 (Debian's) sets a header its copy_headers lists but the decision lacks to the literal
        # text "{http.reverse_proxy.header.<name>}": for caddy every allowed answer names every identity
        # header the gateway injects anywhere, empty where this route injects nothing.
        self.padding = boundary.identity if settings.front == "caddy" else ()
        self.path = settings.path
        self.networks = tuple(ipaddress.ip_network(n) for n in settings.allow_from)
        self.method_header, self.target_header, self.host_header = (
            self.kind.method_header, self.kind.target_header, self.kind.host_header)
        self._peers: dict[str, bool] = {}
        self._passing: dict[str, bool] = {}  # per header name: unstripped's answer (upstream.headers.remember)
        # what the clone does not copy: hop-by-hop framing, and the headers that describe the original request
        self._skipped = _NOT_COPIED | {h.lower() for h in (self.method_header, self.target_header, self.host_header) if h}

    def serves(self, raw_path: str) -> bool:
        """Whether a request for ``raw_path`` is a decision request (envoy: the path prefix and anything below)."""
        path = raw_path.partition("?")[0]
        if path == self.path or path == self.path + "/":
            return True
        return self.target_header is None and path.startswith(self.path + "/")

    def allowed(self, request: web.Request) -> bool:
        """The connection's own peer is in ``allow_from`` (remembered per address: front proxies are few)."""
        remote = request.remote or ""
        known = self._peers.get(remote)
        if known is None:
            if len(self._peers) >= _PEERS:
                self._peers.clear()
            known = self._peers[remote] = self._in_networks(remote)
        return known

    def _in_networks(self, remote: str) -> bool:
        try:
            peer = ipaddress.ip_address(remote)
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.networks)

    def original(self, request: web.Request) -> Original:
        """The original request; 400 when the front proxy did not describe it exactly once."""
        method = _one(request, self.method_header) if self.method_header else request.method
        if self.target_header is not None:
            target = _one(request, self.target_header)
        else:
            target = request.raw_path[len(self.path):]
        host = _one(request, self.host_header)
        if not _METHOD.match(method):
            raise GatewayError.bad_request("The original method is not a method")
        if not _TARGET.match(target):
            raise GatewayError.bad_request("The original request target is not an absolute path")
        skipped = self._skipped
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() not in skipped:
                headers.add(name, value)
        headers["Host"] = host
        if "Sec-WebSocket-Key" in headers or "Sec-WebSocket-Version" in headers:
            headers["Upgrade"] = "websocket"  # the front drops it (hop-by-hop): the handshake is checked as one
            headers["Connection"] = "Upgrade"
        return Original(request.clone(method=method, headers=headers), target)

    def repeated(self, request: web.Request) -> bool:
        """nginx's second ask about a refused request (``@gateway_refusal`` in the generated config): its decision
        request alone carries the query ``REASK``, so the refusal's audit event is written once, at the first ask.
        nginx reads the original target from X-Original-URI: the decision request's own query is the front's, never
        the client's (the first ask, an ``auth_request`` subrequest, has none)."""
        return self.settings.front == "nginx" and request.query_string == REASK

    def unstripped(self, original: web.Request) -> str | None:
        """The first header of the original request that proxy mode would not pass and this front does not
        remove before the app (its generated config); None when the app can only get what proxy mode passes."""
        for name in original.headers:
            passing = self._passing.get(name)
            if passing is None:
                passing = remember(self._passing, name, name,
                                   self.boundary.covers(name) and not self.kind.removes(self.boundary, name))
            if passing:
                return name
        return None


def _one(request: web.Request, name: str) -> str:
    values = request.headers.getall(name, [])
    if len(values) != 1:
        raise GatewayError.bad_request(f"The front proxy must send exactly one {name} header")
    return values[0]
