"""A small OpenID Provider on a real socket whose ID tokens each test scripts: the hostile cases
(``alg: none``, HS256 keyed with the public key, wrong iss/aud/azp/nonce/exp/iat) need a provider
that misbehaves on purpose, which a certified one never does. The real provider
(``tests/support/oidc.py``, oidc-provider from npm) covers the honest flow in tests/ops.

``authorize`` signs the configured user in at once and redirects back with a
code; ``token`` checks the code (single use), the PKCE verifier and the client
authentication, then answers with ``id_token_for``'s token.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jwt
from aiohttp import web
from yarl import URL

from tests.support.jwt_tools import KeyFiles, sign

__all__ = ["LocalOp"]


@dataclass
class LocalOp:
    key: KeyFiles
    client_id: str = "gw"
    client_secret: str = "op-secret"
    user: dict[str, Any] = field(default_factory=lambda: {"sub": "u-1", "email": "ann@example.com", "email_verified": True,
                                                          "name": "Ann", "groups": ["staff"], "sid": "sid-1"})
    issuer: str = ""  # set by start()
    iss_parameter: bool = False  # authorization_response_iss_parameter_supported
    claims_override: dict[str, Any] = field(default_factory=dict)  # merged into every ID token
    header_override: dict[str, Any] = field(default_factory=dict)
    forge: Callable[[dict[str, Any], dict[str, Any]], str] | None = None  # (claims, header) -> token, replaces signing
    token_delay: float = 0.0
    token_status: int = 200
    discovery_issuer: str | None = None  # another issuer in the discovery document (mix-up)
    public_jwk: dict[str, Any] | None = None  # client private_key_jwt: the client's public key
    requests: list[str] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_auth: list[str] = field(default_factory=list)  # how each token request authenticated
    token_peers: list[int] = field(default_factory=list)  # the client port of each token request (connection reuse)

    def url(self, path: str) -> str:
        return self.issuer + path

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.discovery_issuer or self.issuer, "authorization_endpoint": self.url("/authorize"),
            "token_endpoint": self.url("/token"), "jwks_uri": self.url("/jwks"), "userinfo_endpoint": self.url("/userinfo"),
            "end_session_endpoint": self.url("/end_session"), "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": self.iss_parameter,
        }

    def id_token_for(self, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300, "nonce": nonce, **self.user,
                  **self.claims_override}
        claims = {k: v for k, v in claims.items() if v is not None}
        header = {"kid": self.key.kid, **self.header_override}
        if self.forge is not None:
            return self.forge(claims, header)
        return sign(self.key, claims, **self.header_override)

    def logout_token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 120, "jti": secrets.token_hex(8),
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}}, "sid": self.user["sid"], **claims}
        return sign(self.key, {k: v for k, v in body.items() if v is not None}, typ="logout+jwt")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/userinfo", self._userinfo)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        self.requests.append("discovery")
        return web.json_response(self.discovery())

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests.append("jwks")
        return web.json_response({"keys": [self.key.public_jwk()]})

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        self.requests.append("authorize")
        code = secrets.token_urlsafe(16)
        self.codes[code] = dict(q)
        params = {"code": code, "state": q["state"]}
        if self.iss_parameter:
            params["iss"] = self.issuer
        raise web.HTTPFound(str(URL(q["redirect_uri"]).with_query(params)))

    def _client_ok(self, request: web.Request, form: dict[str, str]) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            self.token_auth.append("client_secret_basic")
            return base64.b64decode(header[6:]).decode() == f"{self.client_id}:{self.client_secret}"
        if "client_assertion" in form:
            self.token_auth.append("private_key_jwt")
            assert self.public_jwk is not None
            key = jwt.PyJWK(self.public_jwk).key
            try:
                jwt.decode(form["client_assertion"], key, algorithms=["RS256", "ES256", "PS256"], audience=self.url("/token"),
                           issuer=self.client_id)
            except jwt.PyJWTError:
                return False
            return True
        self.token_auth.append("client_secret_post")
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    async def _token(self, request: web.Request) -> web.Response:
        self.requests.append("token")
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.token_peers.append(peer[1] if peer else 0)
        form = {k: str(v) for k, v in (await request.post()).items()}
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.token_status != 200:
            return web.Response(status=self.token_status, text="broken")
        if not self._client_ok(request, form):
            return web.json_response({"error": "invalid_client"}, status=401)
        started = self.codes.pop(form.get("code", ""), None)  # single use
        if started is None or form.get("redirect_uri") != started["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(b"=")
        if challenge.decode() != started["code_challenge"] or started["code_challenge_method"] != "S256":
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE"}, status=400)
        return web.json_response({"access_token": "op-access", "token_type": "Bearer", "expires_in": 300,
                                  "id_token": self.id_token_for(started["nonce"])})

    async def _userinfo(self, request: web.Request) -> web.Response:
        self.requests.append("userinfo")
        if request.headers.get("Authorization") != "Bearer op-access":
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({k: v for k, v in self.user.items() if k != "sid"})
