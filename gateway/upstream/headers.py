"""The header rewrite: what the upstream receives in place of the client's headers.

Upstreams trust what the gateway injects, so every client header that an
upstream might read as identity, address, URL or method is removed first,
compared the way the laxest upstream compares names (case and ``_``/``-``
folded, as CGI-style servers do):

- hop-by-hop headers and those named in ``Connection`` (RFC 9110 §7.6.1);
- every name ``config.boundary.ClientBoundary`` covers: identity headers (every
  header a route injects, the signed-identity header, names starting with
  ``identity_header_prefixes``), names containing ``_`` (unless
  ``client_headers.allow_underscores``), ``AUTHORITATIVE_HEADERS`` plus
  ``client_headers.strip`` less ``client_headers.keep``, the forwarding headers
  the gateway sets itself, and ``X-Forwarded-*`` unless the peer is a trusted proxy (``forwarded``)
  (front proxies in decision mode remove the same, by ``gateway decision-config``);
- ``Authorization`` unless the route forwards it.

A trusted proxy's ``X-Forwarded-For`` and ``Forwarded`` chains are kept and the
peer is appended; anyone else's are replaced by the peer alone.

Then the gateway's own: ``X-Forwarded-For``/``-Proto``/``-Host`` and
``Forwarded`` (RFC 7239) from the peer and the validated origin, the request
id, the validated ``Host`` for ``preserve_host`` routes, and the claims.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import re
from typing import Any, Iterable, Mapping, TypeVar
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from gateway.auth.admission_cache import ClaimHeaders
from gateway.config import GatewayConfig, Route
from gateway.config.boundary import ClientBoundary
from gateway.forwarded import client
from gateway.net import Host
from gateway.upstream.signed_identity import DEFAULT_HEADER

__all__ = ["HOP_BY_HOP", "HeaderRewrite", "claim_headers", "client_boundary", "connection_tokens",
           "encode_claim", "remember"]

# RFC 9110 §7.6.1: connection-specific headers are not forwarded.
HOP_BY_HOP = frozenset(
    "connection keep-alive proxy-connection proxy-authenticate proxy-authorization te trailer "
    "transfer-encoding upgrade".split()
)
_SURROGATE = re.compile(f"[{chr(0xD800)}-{chr(0xDFFF)}]")  # lone surrogates; chr(): mypyc refuses them in literals
# Printable ASCII except "%" and ",": what a claim may keep verbatim in a header.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%,")


def encode_claim(value: Any) -> str:
    """A claim as a header value that can never split a header.

    Values are percent-encoded UTF-8 (RFC 3986): printable ASCII other than
    ``%`` and ``,`` stays as it is, everything else (CR, LF, non-ASCII) becomes
    ``%XX``; lone surrogates (possible in JSON) become U+FFFD. Lists are
    joined with commas, each item encoded on its own.
    """
    if isinstance(value, (list, tuple)):
        return ",".join(encode_claim(v) for v in value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"), sort_keys=True)
    text: str = value
    if text.isascii() and text.isprintable() and "%" not in text and "," not in text:
        return text  # only characters quote() keeps (printable ASCII but % and ,): the common case, no work
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        data = _SURROGATE.sub("\ufffd", value).encode("utf-8")
    return quote(data, safe=_SAFE)


def connection_tokens(values: Iterable[str]) -> set[str]:
    """Header names listed in the ``Connection`` header ``values``: hop-by-hop too (RFC 9110 §7.6.1)."""
    listed = ",".join(values)
    return {t.strip().lower() for t in listed.split(",") if t.strip()}


def client_boundary(config: GatewayConfig) -> ClientBoundary:
    """The client headers no upstream gets under ``config``: the identity headers of every route, the signed
    identity headers (the default one always), the families, the built-in and configured lists, the service-key header."""
    signed = {DEFAULT_HEADER} | {r.identity_jwt.header for r in config.routes if r.identity_jwt}
    identity = [h for r in config.routes for h in r.headers] + sorted(signed)
    credentials = (config.service_keys.header,) if config.service_keys is not None else ()
    return ClientBoundary.build(identity, config.identity_header_prefixes, config.client_headers, credentials)


@functools.lru_cache(maxsize=4096)  # once per peer address, not per request; bounded
def _forwarded_node(peer: str | None) -> str:
    """An RFC 7239 node: IPv6 in quotes and brackets, ``unknown`` without a peer address."""
    if not peer:
        return "unknown"
    try:
        if isinstance(ipaddress.ip_address(peer), ipaddress.IPv6Address):
            return f'"[{peer}]"'
    except ValueError:
        return "unknown"
    return peer


_REMEMBERED_NAMES = 4096  # distinct answers per header name a memo keeps (HeaderRewrite's, decision.Front's)
_REMEMBERED_LENGTH = 64  # longer names are answered afresh: made-up 8 KB names cannot hold 32 MB of memory

_K = TypeVar("_K")


def remember(answers: dict[_K, bool], key: _K, name: str, answer: bool) -> bool:
    """``answer``, kept in ``answers`` for ``key`` (about the header ``name``): a client population sends a few dozen
    names, each answered once instead of per request. Bounded: long names are not kept, and a flood of made-up
    names starts the memo again."""
    if len(name) <= _REMEMBERED_LENGTH:
        if len(answers) >= _REMEMBERED_NAMES:
            answers.clear()
        answers[key] = answer
    return answer


class HeaderRewrite:
    """Which client headers are dropped, and the headers the gateway adds; one per configuration."""

    def __init__(self, boundary: ClientBoundary) -> None:
        self.boundary = boundary
        self._dropped: dict[tuple[str, bool], bool] = {}  # the answers for the names clients send, bounded

    def dropped(self, name: str, from_proxy: bool = False) -> bool:
        """Whether a client header of this name never reaches an upstream (route-independent part).

        ``from_proxy``: the peer is a trusted proxy, whose other ``X-Forwarded-*`` pass. Remembered per name: a
        client population sends a few dozen names, each folded and looked up once instead of per request.
        """
        key = (name, from_proxy)
        known = self._dropped.get(key)
        if known is None:
            known = remember(self._dropped, key, name,
                             name.lower() == "host" or self.boundary.covers(name, trust_forwarded=from_proxy))
        return known

    def headers(
        self,
        request: web.Request,
        route: Route,
        injected: ClaimHeaders,
        req_id: str,
        host: Host,
        origin: tuple[str, Host],
    ) -> CIMultiDict[str]:
        """The upstream's headers: the client's, cleaned, plus the gateway's own and the claim headers ``injected``.

        ``host`` is the request's validated Host, ``origin`` the scheme and host
        the client used (``target.client_origin``).
        """
        listed = request.headers.getall("Connection", ())
        drop = HOP_BY_HOP | connection_tokens(listed) if listed else HOP_BY_HOP
        out: CIMultiDict[str] = CIMultiDict()
        from_proxy = client(request).from_proxy
        for name, value in request.headers.items():
            lowered = name.lower()
            if (lowered in drop or self.dropped(name, from_proxy)
                    or (lowered == "authorization" and not route.forward_authorization)):
                continue
            out.add(name, value)
        scheme, origin_host = origin
        host_text = str(origin_host)
        peer = request.remote or ""
        prior = ",".join(request.headers.getall("X-Forwarded-For", [])) if from_proxy else ""
        out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        out["X-Forwarded-Proto"] = scheme
        out["X-Forwarded-Host"] = host_text
        node = f'for={_forwarded_node(peer)};host="{host_text}";proto={scheme}'
        prior_forwarded = ",".join(request.headers.getall("Forwarded", [])) if from_proxy else ""
        out["Forwarded"] = f"{prior_forwarded}, {node}" if prior_forwarded else node
        out["X-Request-Id"] = req_id
        if route.preserve_host:
            out["Host"] = str(host)
        for name, value in injected:
            out[name] = value
        return out


def claim_headers(route: Route, claims: Mapping[str, Any] | None) -> ClaimHeaders:
    """The route's claim headers, for those claims the caller has (``routes[].headers``): the same for every request
    of one admission, so the admission cache keeps them with the caller."""
    if claims is None:
        return ()
    return tuple((header, encode_claim(claims[claim])) for header, claim in route.headers.items() if claim in claims)
