"""Cross-origin resource sharing, decided once at the gateway for its endpoints and every route.

Preflights are answered here and never reach an upstream. A cross-origin
request from an origin that is not allowed is refused with a 403 (and no CORS
headers), so a form post from another site cannot even reach an upstream.
Allowed origins are echoed (never ``*``) with ``Vary: Origin``; the upstreams'
own ``Access-Control-*`` headers are replaced, so one policy holds everywhere.
"""
from __future__ import annotations

import re
from typing import Callable

from aiohttp import web

from gateway.config import Cors
from gateway.context import state
from gateway.errors import ErrorCode, GatewayError
from gateway.forwarded import client_origin

__all__ = ["CorsPolicy", "is_preflight", "same_origin"]

_PREFLIGHT = web.RequestKey("cors_preflight", bool)
_REFUSED = web.RequestKey("cors_refused", bool)


def is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def same_origin(request: web.Request, origin: str) -> bool:
    """Whether ``origin`` is the gateway's own (``target.client_origin``); never for an invalid host."""
    try:
        scheme, host = client_origin(request)
    except GatewayError:
        return False
    return origin.lower() == f"{scheme}://{host}"


def _origin_pattern(origin: str) -> re.Pattern[str]:
    """``https://*.example.com`` matches any subdomain (not the bare domain) on that scheme and port."""
    scheme, rest = origin.split("://", 1)
    return re.compile(re.escape(scheme) + r"://(?:[a-z0-9-]+\.)+" + re.escape(rest[2:]) + r"\Z")


class CorsPolicy:
    def __init__(self, settings: Cors, *, extra_headers: tuple[str, ...] = ()) -> None:
        """``extra_headers`` are allowed on top of ``allow_headers`` (cookie mode's CSRF header)."""
        allow = settings.allow_headers + tuple(h for h in extra_headers if h.lower() not in {a.lower() for a in settings.allow_headers})
        self.settings = settings.model_copy(update={"allow_headers": allow})
        self._any = "*" in settings.allow_origins
        self._exact = frozenset(o for o in settings.allow_origins if "*" not in o)
        self._patterns = tuple(_origin_pattern(o) for o in settings.allow_origins if o.startswith(("http://*.", "https://*.")))
        self._methods = frozenset(settings.allow_methods)
        self._headers = frozenset(h.lower() for h in allow)

    def allows(self, origin: str) -> bool:
        origin = origin.lower()
        return self._any or origin in self._exact or any(p.match(origin) for p in self._patterns)

    def screen(self, request: web.Request, accepts: Callable[[str], bool]) -> web.Response | None:
        """Before dispatch: the preflight answer, a refusal (raised), or None to carry on."""
        origin = request.headers.get("Origin")
        if origin is None or same_origin(request, origin):
            return None
        if not self.allows(origin):
            request[_REFUSED] = True
            raise GatewayError(403, ErrorCode.ORIGIN_NOT_ALLOWED, "This origin may not call the gateway (CORS)")
        if not is_preflight(request):
            return None
        return self._preflight(request, origin, accepts)

    def _preflight(self, request: web.Request, origin: str, accepts: Callable[[str], bool]) -> web.Response:
        method = request.headers["Access-Control-Request-Method"].strip().upper()
        asked = [h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()]
        any_header = "*" in self._headers
        if not ((method in self._methods or "*" in self._methods) and accepts(method)):
            request[_REFUSED] = True
            raise GatewayError(403, ErrorCode.CORS_REFUSED, f"{method} is not allowed here from another origin")
        if not any_header and not set(asked) <= self._headers:
            request[_REFUSED] = True
            raise GatewayError(403, ErrorCode.CORS_REFUSED, "A requested header is not allowed from another origin")
        request[_PREFLIGHT] = True
        s = self.settings
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": method if "*" in self._methods else ", ".join(s.allow_methods),
            "Access-Control-Allow-Headers": ", ".join(asked) if any_header else ", ".join(s.allow_headers),
            "Access-Control-Max-Age": str(int(s.max_age)),
            "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        }
        if s.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return web.Response(status=204, headers=headers)

    def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """Just before headers go out: this policy's headers replace any an upstream sent."""
        context = state(request)
        if context.get(_PREFLIGHT):
            return
        for name in [k for k in response.headers if k.lower().startswith("access-control-")]:
            response.headers.popall(name)
        _add_vary(response, "Origin")
        origin = request.headers.get("Origin")
        if origin is None or context.get(_REFUSED) or not self.allows(origin):
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        if self.settings.allow_credentials:
            response.headers["Access-Control-Allow-Credentials"] = "true"
        if self.settings.expose_headers:
            response.headers["Access-Control-Expose-Headers"] = ", ".join(self.settings.expose_headers)


def _add_vary(response: web.StreamResponse, name: str) -> None:
    current = [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]
    if "*" in current or name.lower() in (v.lower() for v in current):
        return
    response.headers["Vary"] = ", ".join([*current, name])
