"""``/.well-known`` documents: the public signing keys (JWKS) and an OpenID-style discovery document.

Both are computed once per configuration. The JWKS lists public keys only
(shared HS256 secrets never leave the process) and carries ``Cache-Control``
and an ``ETag``, so clients re-fetch cheaply when a new key appears.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.auth.keys import KeyRing
from gateway.config import GatewayConfig
from gateway.endpoints.table import Endpoint, etag, not_modified
from gateway.errors import ErrorCode, GatewayError
from gateway.forwarded import client_origin
from gateway.net import is_loopback

__all__ = ["wellknown_endpoints"]

GET = frozenset({"GET", "HEAD"})


def _cached_json(body: bytes, max_age: int, request: web.Request, vary: str | None = None) -> web.Response:
    tag = etag(body)
    headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": tag}
    if vary:
        headers["Vary"] = vary
    if not_modified(request, tag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def _base_url(request: web.Request, config: GatewayConfig) -> str:
    """The configured public URL; without one, only the loopback URL of a developer's own machine.

    Building the document from any other Host would let a client choose the
    URLs in it, and a shared cache would hand them to everybody (poisoning).
    """
    if config.public_url:
        return config.public_url
    scheme, host = client_origin(request)
    if not is_loopback(host.name):
        raise GatewayError(404, ErrorCode.NOT_CONFIGURED, "Set public_url to publish the discovery document")
    return f"{scheme}://{host}"


def discovery_document(config: GatewayConfig, keys: KeyRing, base: str) -> dict[str, Any]:
    paths = config.endpoints
    algs = sorted({k.algorithm for k in keys.keys.values() if not k.symmetric})
    return {
        "issuer": config.tokens.issuer,
        "jwks_uri": base + paths.jwks,
        "token_endpoint": base + paths.token,
        "token_refresh_endpoint": base + paths.refresh,
        "token_verify_endpoint": base + paths.verify,
        "logout_endpoint": base + paths.logout,
        "userinfo_endpoint": base + paths.me,
        "grant_types_supported": ["password", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_signing_alg": keys.active.algorithm,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "token_type"],
    }


def wellknown_endpoints(config: GatewayConfig, keys: KeyRing) -> dict[str, Endpoint]:
    """``jwks`` and ``openid_configuration`` entries for the endpoint table."""
    max_age = int(config.tokens.jwks_max_age)
    jwks_body = json.dumps(keys.jwks(), separators=(",", ":")).encode()
    vary = None if config.public_url else "Host, X-Forwarded-Host, X-Forwarded-Proto"

    async def jwks(request: web.Request) -> web.Response:
        return _cached_json(jwks_body, max_age, request)

    async def openid_configuration(request: web.Request) -> web.Response:
        body = json.dumps(discovery_document(config, keys, _base_url(request, config))).encode()
        return _cached_json(body, max_age, request, vary)

    return {
        config.endpoints.jwks: Endpoint(GET, jwks),
        config.endpoints.openid_configuration: Endpoint(GET, openid_configuration),
    }
