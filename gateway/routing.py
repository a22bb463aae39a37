"""Which route a request takes, and whether its claims satisfy that route.

Matching and forwarding use the same path: the request target is split into
segments once (``target.RequestPath``, where ambiguous forms are refused with a
400), routes match on the decoded segments case-insensitively (unless
``paths.case_sensitive``), and the upstream receives the raw segments that
matched. No later layer decodes or re-normalises anything, so
``/public/../admin``, ``/API/admin`` and their encoded cousins cannot end up
somewhere they were not matched.

Routes live in a segment trie, so the cost of a match grows with the depth of
the path, not with the number of routes.

A route with ``networks`` fits only a client whose address (``forwarded.client``:
the peer's, or behind trusted proxies the one they report) is in one of its
blocks, resolved once here; any other client goes on to the next route, and an
address that is not one (a Unix socket's peer) is in no network.
"""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from gateway.config import Route
from gateway.config.networks import resolve
from gateway.net import Network, parse_address
from gateway.target import RequestPath, fold_segment

__all__ = ["Router", "client_in", "host_fallthrough", "shadowed_routes"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

def _segments(prefix: str) -> tuple[str, ...]:
    return tuple(s for s in prefix.split("/") if s)


@dataclass(slots=True)
class _Node:
    children: dict[str, "_Node"] = field(default_factory=dict)
    routes: list[tuple[int, Route]] = field(default_factory=list)


def _host_matches(pattern: str | None, host: str) -> bool:
    if pattern is None:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


@functools.lru_cache(maxsize=4096)  # once per client address, not per request; bounded against address floods
def _address(client: str) -> IPAddress | None:
    """The client's address as compared with networks: IPv4-mapped IPv6 as IPv4; None when it is not an address."""
    plain = parse_address(client)
    return None if plain is None else ipaddress.ip_address(plain)


def client_in(client: str, networks: tuple[Network, ...]) -> bool:
    """Whether the address ``client`` lies in one of ``networks`` (False for anything that is not an address)."""
    address = _address(client)
    return address is not None and any(address.version == n.version and address in n for n in networks)


class Router:
    """First match wins: of all routes whose prefix covers the path, the earliest that fits."""

    def __init__(self, routes: Iterable[Route], *, case_sensitive: bool = False,
                 networks: Mapping[str, tuple[str, ...]] | None = None) -> None:
        """``networks``: the configuration's named networks, which routes' ``networks`` may name."""
        self.routes = tuple(routes)
        self.case_sensitive = case_sensitive
        self._root = _Node()
        self._networks = {id(r): resolve(r.networks, networks or {}) for r in self.routes if r.networks is not None}
        # Routes whose requests an earlier route with networks may take instead, for another client address:
        # an answer for one of them (or for a route with networks) holds only for the address it was decided for.
        first = next((i for i, r in enumerate(self.routes) if r.networks is not None), len(self.routes))
        self._network_dependent = {id(r) for r in self.routes[first:]}
        for index, route in enumerate(self.routes):
            node = self._root
            for segment in _segments(route.prefix):
                node = node.children.setdefault(fold_segment(segment, case_sensitive), _Node())
            node.routes.append((index, route))

    def match(self, method: str, host: str, path: RequestPath, client: str) -> Route | None:
        """``host`` is the normalised host name (``target.Host.name``), without port; ``client`` the client's
        address as the gateway trusts it (``forwarded.client(request).address``)."""
        best: tuple[int, Route] | None = None
        node: _Node | None = self._root
        depth = 0
        while node is not None:
            for index, route in node.routes:
                if best is not None and index >= best[0]:
                    break
                if ((route.methods is None or method in route.methods) and _host_matches(route.host, host)
                        and (route.networks is None or client_in(client, self._networks[id(route)]))):
                    best = (index, route)
                    break
            if depth == len(path.segments):
                break
            node = node.children.get(fold_segment(path.segments[depth], self.case_sensitive))
            depth += 1
        return best[1] if best else None

    def network_dependent(self, route: Route) -> bool:
        """Whether another client address could have taken another route: the route has ``networks``, or an
        earlier route has (a cache that does not key on the client address must not reuse its answers)."""
        return id(route) in self._network_dependent


def shadowed_routes(routes: tuple[Route, ...]) -> list[str]:
    """Warnings for routes that an earlier route always wins over."""
    warnings = []
    for j, later in enumerate(routes):
        for earlier in routes[:j]:
            covers_path = _segments(later.prefix)[: len(_segments(earlier.prefix))] == _segments(earlier.prefix)
            covers_methods = earlier.methods is None or (
                later.methods is not None and set(later.methods) <= set(earlier.methods)
            )
            covers_host = earlier.host is None or earlier.host == later.host
            covers_clients = earlier.networks is None  # a route with networks leaves the other clients to later ones
            if covers_path and covers_methods and covers_host and covers_clients:
                warnings.append(f"routes[{j}] ({later.name}): shadowed by earlier route {earlier.name} ({earlier.prefix})")
                break
    return warnings


def host_fallthrough(routes: tuple[Route, ...]) -> list[str]:
    """Warnings for a host route followed by a host-less route covering its prefix.

    Requests for that host with any other spelling the upstream accepts (a port,
    a name the gateway refuses but a proxy in between rewrites) take the
    host-less route; with ``preserve_host`` a name-based upstream (nginx vhosts)
    may then serve the host route's site under the weaker rules.
    """
    warnings = []
    for i, hosted in enumerate(routes):
        if hosted.host is None:
            continue
        for j, later in enumerate(routes[i + 1:], start=i + 1):
            prefix = _segments(later.prefix)
            overlapping = hosted.methods is None or later.methods is None or set(hosted.methods) & set(later.methods)
            if later.host is None and _segments(hosted.prefix)[: len(prefix)] == prefix and overlapping:
                warnings.append(
                    f"routes[{j}] ({later.name}): serves {hosted.prefix} for every host but {hosted.host}, "
                    f"with other rules than routes[{i}] ({hosted.name}); make sure its upstream cannot serve "
                    f"{hosted.host} (nginx: a default_server that refuses unknown names)"
                )
                break
    return warnings
