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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from gateway.config import Route
from gateway.target import RequestPath, fold_segment

__all__ = ["Router", "host_fallthrough", "shadowed_routes"]

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


class Router:
    """First match wins: of all routes whose prefix covers the path, the earliest that fits."""

    def __init__(self, routes: Iterable[Route], *, case_sensitive: bool = False) -> None:
        self.routes = tuple(routes)
        self.case_sensitive = case_sensitive
        self._root = _Node()
        for index, route in enumerate(self.routes):
            node = self._root
            for segment in _segments(route.prefix):
                node = node.children.setdefault(fold_segment(segment, case_sensitive), _Node())
            node.routes.append((index, route))

    def match(self, method: str, host: str, path: RequestPath) -> Route | None:
        """``host`` is the normalised host name (``target.Host.name``), without port."""
        best: tuple[int, Route] | None = None
        node: _Node | None = self._root
        depth = 0
        while node is not None:
            for index, route in node.routes:
                if best is not None and index >= best[0]:
                    break
                if (route.methods is None or method in route.methods) and _host_matches(route.host, host):
                    best = (index, route)
                    break
            if depth == len(path.segments):
                break
            node = node.children.get(fold_segment(path.segments[depth], self.case_sensitive))
            depth += 1
        return best[1] if best else None


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
            if covers_path and covers_methods and covers_host:
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
