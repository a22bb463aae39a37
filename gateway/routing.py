"""Which route a request takes, and whether its claims satisfy that route.

Matching and forwarding use the same path: the request target is split into
segments once (``RequestPath``), ambiguous encodings are refused with a 400,
routes match on the decoded segments, and the upstream receives the raw
segments that matched. No later layer decodes or re-normalises anything, so
``/public/../admin`` and its encoded cousins cannot end up somewhere they were
not matched.

Routes live in a segment trie, so the cost of a match grows with the depth of
the path, not with the number of routes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import unquote_to_bytes

from .config import Route
from .errors import GatewayError

__all__ = ["RequestPath", "Router", "check_requirements", "parse_target", "shadowed_routes"]

_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Encoded bytes that change a path's structure when an upstream decodes them:
# slash, backslash, NUL and other controls.
_FORBIDDEN_DECODED = re.compile(rb"[/\\\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class RequestPath:
    raw_segments: tuple[str, ...]  # as sent, still percent-encoded
    segments: tuple[str, ...]  # decoded, used for matching
    query: str  # raw query string, without "?"
    trailing_slash: bool

    @property
    def decoded(self) -> str:
        return "/" + "/".join(self.segments) + ("/" if self.trailing_slash and self.segments else "")

    def forward_path(self, strip: int = 0) -> str:
        """The raw path to send upstream, without the first ``strip`` segments."""
        rest = self.raw_segments[strip:]
        if not rest:
            return "/"
        return "/" + "/".join(rest) + ("/" if self.trailing_slash else "")


def _bad(detail: str) -> GatewayError:
    return GatewayError.bad_request(detail)


def _decode_segment(raw: str) -> str:
    if _PCT.search(raw):
        raise _bad("Malformed percent-encoding in the path")
    data = unquote_to_bytes(raw)
    if _FORBIDDEN_DECODED.search(data):
        raise _bad("Ambiguous encoding in the path (encoded slash, backslash or control character)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("The path is not valid UTF-8") from None
    # Some servers (Tomcat, Jetty) drop ";params" before resolving dot segments.
    if text.split(";", 1)[0] in {".", ".."}:
        raise _bad("Dot segments are not allowed in the path")
    return text


def parse_target(target: str) -> RequestPath:
    """Split an origin-form request target; absolute-form and odd paths are refused."""
    path, _, query = target.partition("?")
    path = path.split("#", 1)[0]
    if not path.startswith("/"):
        raise _bad("The request target must be an absolute path")
    if "//" in path or "\\" in path:
        raise _bad("Empty segments or backslashes are not allowed in the path")
    trailing = path.endswith("/") and path != "/"
    raw = tuple(path.strip("/").split("/")) if path != "/" else ()
    return RequestPath(raw, tuple(_decode_segment(s) for s in raw), query, trailing)


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

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._root = _Node()
        for index, route in enumerate(self.routes):
            node = self._root
            for segment in _segments(route.prefix):
                node = node.children.setdefault(segment, _Node())
            node.routes.append((index, route))

    def match(self, method: str, host: str, path: RequestPath) -> Route | None:
        host = host.lower().rsplit(":", 1)[0] if host and not host.startswith("[") else (host or "").lower()
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
            node = node.children.get(path.segments[depth])
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


def _as_set(value: Any, *, split: bool = False) -> set[str]:
    if isinstance(value, str):
        return set(value.split()) if split else {value}
    if isinstance(value, (list, tuple)):
        return {str(v) for v in value}
    return set()


def check_requirements(route: Route, claims: Mapping[str, Any]) -> None:
    """Raise 403 ``permission_denied`` unless the claims meet the route's ``require``."""
    req = route.require
    if req.roles_any and not _as_set(claims.get("roles")) & set(req.roles_any):
        raise GatewayError(403, "permission_denied", "You do not have a role this route requires")
    if req.scopes_all:
        granted = _as_set(claims.get("scope"), split=True) | _as_set(claims.get("scopes"))
        if not set(req.scopes_all) <= granted:
            raise GatewayError(403, "permission_denied", "You do not have every scope this route requires")
    for name, expected in req.claims.items():
        if name not in claims or claims[name] != expected or type(claims[name]) is not type(expected):
            raise GatewayError(403, "permission_denied", f"The {name} claim does not allow this route")
