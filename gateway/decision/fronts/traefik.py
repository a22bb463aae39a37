"""Traefik (``forwardAuth``): removes by a case-insensitive regular expression, after an allowed decision.

Removes everything the boundary covers through ``authResponseHeadersRegex`` (every request header it
matches is removed, then the decision's matching headers are set), except the forwarding headers
Traefik's entry point already replaces for untrusted peers (X-Forwarded-For, -Proto, -Host, ...,
X-Real-Ip), which it matches only in their spellings with ``_``. One expression, RE2 and Python alike:
``removes`` matches with the very text the config carries.
"""
from __future__ import annotations

import functools
import json
import re

from gateway.config.boundary import ClientBoundary, fold_header
from gateway.decision.fronts.base import Deployment, FrontKind, regex_alternatives

__all__ = ["FRONT"]

# Replaced by Traefik's entry point when the peer is not in forwardedHeaders.trustedIPs (its defaults)
_MANAGED = frozenset({
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-server",
    "x-forwarded-uri", "x-forwarded-method", "x-forwarded-prefix", "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info", "x-real-ip",
})


def _regex(b: ClientBoundary) -> str:
    alternatives = regex_alternatives(b, skip=_MANAGED)
    alternatives.append("x[-_]forwarded[-_].*_.*" if not b.underscores else "")  # underscored X-Forwarded-*
    alternatives = [a for a in alternatives if a]
    unknown = "x[-_]forwarded[-_](?:" + "|".join(
        sorted(re.escape(n[len("x-forwarded-"):]) for n in b.folded if n.startswith("x-forwarded-") and n not in _MANAGED)
    ) + ")"
    return "(?i)^(?:" + "|".join([*alternatives, unknown]) + ")$"


@functools.lru_cache(maxsize=8)
def _compiled(b: ClientBoundary) -> re.Pattern[str]:
    return re.compile(_regex(b).removeprefix("(?i)"), re.IGNORECASE)


def removes(boundary: ClientBoundary, name: str) -> bool:
    if _compiled(boundary).match(name):
        return True
    return "_" not in name and fold_header(name) in _MANAGED


def render(d: Deployment) -> dict[str, str]:
    b = d.boundary
    gateway_url = f"http://{d.gateway}"
    endpoints = f"(PathPrefix(`/auth/`) && !PathPrefix(`{d.decide_path}`)) || PathPrefix(`/.well-known/`)"
    middlewares = "[gateway-decision]" if d.forward_authorization else "[gateway-decision, no-token]"
    no_token = "" if d.forward_authorization else """
    # The app gets identity headers, not the token (proxy mode's default). An empty value removes it.
    no-token:
      headers:
        customRequestHeaders:
          Authorization: ""
"""
    text = f"""\
# Decision mode behind Traefik (v2.10+ and v3): Traefik proxies to the app, the gateway decides each
# request through forwardAuth (docs/decision-mode.md). A file-provider dynamic configuration, generated
# by `gateway decision-config traefik`: regenerate it from your own gateway config rather than editing
# the header lists by hand. Keep the entry point's forwardedHeaders without trustedIPs (the default):
# Traefik then replaces the client's X-Forwarded-For, -Proto, -Host, ... and X-Real-Ip itself. The
# gateway's config needs
#   decision: {{front: traefik}}
#   trust_forwarded_headers: true      # per-client rate limits see Traefik's X-Forwarded-For
# and listens where the `gateway` service points (loopback: decision.allow_from's default).
http:
  routers:
    # The gateway's own endpoints (login, refresh, logout, me, JWKS) are proxied as they are, but never
    # the decision endpoint: only Traefik's forwardAuth asks it, straight from the middleware.
    gateway-endpoints:
      rule: {json.dumps(endpoints)}
      service: gateway
      priority: 100
    app:
      rule: "PathPrefix(`/`)"
      service: app
      priority: 1
      middlewares: {middlewares}
  middlewares:
    gateway-decision:
      forwardAuth:
        # Traefik sends X-Forwarded-Method, -Uri, -Host, -Proto and -For, with the client's headers.
        address: {json.dumps(gateway_url + d.decide_path)}
        # false: those X-Forwarded-* always describe the request Traefik received, never values a
        # client (or another proxy) put in; the gateway reads the original request from them alone.
        trustForwardHeader: false
        # On a 2xx, each is removed from the request, then set from the decision if it has it.
        authResponseHeaders: {json.dumps(list(b.identity))}
        # ...and every header proxy mode would not pass from the client is removed too, in any case and
        # any "_"/"-" spelling: names with "_", identity families, authoritative headers.
        authResponseHeadersRegex: {json.dumps(_regex(b))}{no_token}
  services:
    gateway:
      loadBalancer:
        servers:
        - url: {json.dumps(gateway_url)}
    app:
      loadBalancer:
        servers:
        - url: {json.dumps("http://" + d.app)}
"""
    return {"traefik-dynamic.yml": text}


FRONT = FrontKind("traefik", "X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host", removes, render)
