"""One OpenID Provider as the gateway's relying party sees it: discovery, the authorization request,
the code exchange and userinfo.

Every call to the provider is bounded by ``oidc.timeout`` (or the provider's
``fetch_timeout``): a provider that does not answer is a 504, one that is down
or answers nonsense a 502, never a hang. Redirects are never followed, bodies
are capped, and no token, code or secret is ever logged. Calls share one
kept-alive client per process (``HTTP``); the JWKS fetches are the external
issuers' cache's own.

Discovery (OIDC Discovery 1.0) is cached for ``oidc.discovery_ttl``; concurrent
callers share one fetch, and a failed refresh keeps the last good document.
The document's ``issuer`` must equal the configured one exactly (§4.3), which is
the mix-up defence: ID tokens are then checked against that same value. The
provider's keys live in the gateway's JWKS cache of external issuers
(``auth.issuers.JwksCache``): an unknown ``kid`` re-fetches (key rotation),
rate-limited.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote

import aiohttp
import jwt
from yarl import URL

from gateway.auth.issuers import JwksCache
from gateway.config import ExternalIssuer
from gateway.config.oidc import OidcProvider, is_loopback_url
from gateway.errors import ErrorCode, GatewayError
from gateway.observe.logs import warn_repeated

__all__ = ["CLIENT_ERRORS", "HTTP", "Metadata", "OAuthError", "ProviderClient", "SharedHttp", "oauth_error", "pkce_pair",
           "provider_error"]

log = logging.getLogger("gateway.auth.oidc")

MAX_BODY = 1024 * 1024
_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


class SharedHttp:
    """One kept-alive HTTP client per process for every call to every provider.

    A callback then pays no new TCP and TLS handshake with the provider's
    token endpoint. It outlives configurations (a reload keeps it) and is
    closed when the last application using it stops (``hold``/``release``
    from the app's lifecycle). Cookies are never kept.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holders = 0

    def hold(self) -> None:
        self._holders += 1

    async def release(self) -> None:
        self._holders -= 1
        if self._holders <= 0 and self._session is not None:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:  # a new loop: a new client
            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
            self._loop = loop
        return self._session


HTTP = SharedHttp()


def provider_error(status: int, code: ErrorCode, detail: str) -> GatewayError:
    return GatewayError(status, code, detail)


# Token-endpoint errors (RFC 6749 §5.2) that say the gateway's client registration is wrong, not the user's sign-in.
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})
_ERROR_CODE = re.compile(r"[^A-Za-z0-9_.-]")
_JWS = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")  # a token someone echoed back
MAX_DESCRIPTION = 200


@dataclass(frozen=True, slots=True)
class OAuthError:
    """A provider's OAuth error, fit for a log line and a page: printable ASCII, bounded, nothing secret."""

    code: str
    description: str

    def __str__(self) -> str:
        return f"{self.code}: {self.description}" if self.description else self.code


def printable(text: str, limit: int = MAX_DESCRIPTION) -> str:
    """``text`` from a provider, bounded and in printable ASCII (other characters become ``?``)."""
    cleaned = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in text[:limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 3] + "..."


def oauth_error(error: str, description: object, hidden: list[str]) -> OAuthError:
    """``error`` and ``error_description`` as the provider sent them, made harmless: only the characters RFC 6749
    allows (printable ASCII), bounded, with every value in ``hidden`` (the code, verifier, secret, client
    assertion) and anything shaped like a JWT cut out, in case a provider echoes what it was sent."""
    code = _ERROR_CODE.sub("", error)[:64] or "unknown_error"
    text = description if isinstance(description, str) else ""
    # redacted whole, then cut: a cut first could leave the start of a secret that straddles it (the answer
    # is already bounded by the provider client's body limit)
    text = "".join(c if 0x20 <= ord(c) < 0x7F else " " for c in text)
    for value in sorted(hidden, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "[redacted]")
    text = _JWS.sub("[redacted]", text)
    text = " ".join(text.split())
    if len(text) > MAX_DESCRIPTION:
        text = text[:MAX_DESCRIPTION - 3].rstrip() + "..."
    return OAuthError(code, text)


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (43 characters of base64url, RFC 7636 §4.1) and its S256 challenge."""
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass(frozen=True, slots=True)
class Metadata:
    """The parts of a discovery document the gateway uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None
    iss_parameter: bool  # authorization_response_iss_parameter_supported (RFC 9207)


class ProviderClient:
    """Talks to one provider; built once per configuration, shared by every request."""

    def __init__(self, name: str, settings: OidcProvider, timeout: float, discovery_ttl: float) -> None:
        self.name = name
        self.settings = settings
        self.timeout = settings.fetch_timeout or timeout
        self.discovery_ttl = discovery_ttl
        self.jwks: JwksCache | None = None
        self._metadata: Metadata | None = None
        self._fetched_at = float("-inf")
        self._inflight: asyncio.Task[Metadata] | None = None
        self._private_key: Any = None

    def load_private_key(self, pem: bytes) -> None:
        """The ``private_key_jwt`` signing key (read by the runtime, so a bad file is a config error)."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        self._private_key = load_pem_private_key(pem, password=None)

    # -- HTTP ------------------------------------------------------------------------

    def _allowed_url(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        url = URL(value)
        return bool(url.host) and (url.scheme == "https" or (url.scheme == "http" and (self.settings.allow_http or is_loopback_url(url))))

    async def _request(self, what: str, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        """Status and JSON body of one call to the provider; 502/504 when it cannot be had."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            try:
                status, body = await self._send(method, url, timeout, kwargs)
            except aiohttp.ServerDisconnectedError:  # a kept-alive connection the provider had just closed: once more
                status, body = await self._send(method, url, timeout, kwargs)
        except asyncio.TimeoutError:
            warn_repeated(log, "oidc provider %s: %s timed out after %.1fs", self.name, what, self.timeout)
            raise provider_error(504, ErrorCode.PROVIDER_TIMEOUT, f"The identity provider did not answer in time ({what})") from None
        except (aiohttp.ClientError, OSError) as exc:
            warn_repeated(log, "oidc provider %s: %s failed (%s)", self.name, what, type(exc).__name__)
            raise provider_error(502, ErrorCode.PROVIDER_UNAVAILABLE, f"The identity provider cannot be reached ({what})") from None
        if len(body) > MAX_BODY:
            raise provider_error(502, ErrorCode.PROVIDER_ERROR, f"The identity provider's answer is too large ({what})")
        try:
            return status, json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            warn_repeated(log, "oidc provider %s: %s answered HTTP %d without JSON", self.name, what, status)
            raise provider_error(502, ErrorCode.PROVIDER_ERROR, f"The identity provider answered nonsense ({what})") from None

    async def _send(self, method: str, url: str, timeout: aiohttp.ClientTimeout, kwargs: dict[str, Any]) -> tuple[int, bytes]:
        async with HTTP.session().request(method, url, allow_redirects=False, timeout=timeout, **kwargs) as resp:
            return resp.status, await resp.content.read(MAX_BODY + 1)

    # -- discovery -------------------------------------------------------------------

    async def metadata(self) -> Metadata:
        """The discovery document: cached, refreshed after ``discovery_ttl``, the last good one kept on failure."""
        fresh = time.monotonic() - self._fetched_at < self.discovery_ttl
        if self._metadata is not None and fresh:
            return self._metadata
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._discover())
            self._inflight.add_done_callback(self._clear_inflight)
        try:
            return await asyncio.shield(self._inflight)
        except GatewayError:
            if self._metadata is not None:
                return self._metadata  # the provider's discovery is down; its last document still holds
            raise

    def _clear_inflight(self, task: "asyncio.Task[Metadata]") -> None:
        self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved, so a failure nobody awaited is not logged as unhandled

    async def _discover(self) -> Metadata:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, doc = await self._request("discovery", "GET", url, headers={"Accept": "application/json"})
        if status != 200 or not isinstance(doc, dict):
            warn_repeated(log, "oidc provider %s: discovery answered HTTP %d", self.name, status)
            raise provider_error(502, ErrorCode.PROVIDER_ERROR, "The identity provider's discovery document is unavailable")
        if doc.get("issuer") != self.settings.issuer:
            raise self._issuer_mismatch(url, doc.get("issuer"))
        for field in (*_ENDPOINTS, "userinfo_endpoint", "end_session_endpoint"):
            if (field in _ENDPOINTS or doc.get(field) is not None) and not self._allowed_url(doc.get(field)):
                raise provider_error(502, ErrorCode.PROVIDER_ERROR, f"The identity provider's {field} is not a usable URL")
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise provider_error(502, ErrorCode.PROVIDER_ERROR, "The identity provider does not support PKCE S256")
        metadata = Metadata(
            issuer=doc["issuer"], authorization_endpoint=doc["authorization_endpoint"], token_endpoint=doc["token_endpoint"],
            jwks_uri=doc["jwks_uri"], userinfo_endpoint=doc.get("userinfo_endpoint"),
            end_session_endpoint=doc.get("end_session_endpoint"),
            iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
        )
        if self.jwks is None or self.jwks.settings.jwks_url != metadata.jwks_uri:
            self.jwks = JwksCache(f"oidc:{self.name}", self._jwks_settings(metadata))
        self._metadata, self._fetched_at = metadata, time.monotonic()
        return metadata

    def _issuer_mismatch(self, url: str, discovered: object) -> GatewayError:
        """Configured and discovered issuer side by side (log and page): the fix is one of them, and only the
        operator knows which. Nothing else of the document is trusted (OIDC Discovery §4.3, the mix-up defence)."""
        configured = self.settings.issuer
        found = printable(discovered) if isinstance(discovered, str) else f"no issuer ({type(discovered).__name__})"
        hint = ""
        if isinstance(discovered, str) and discovered.rstrip("/") == configured.rstrip("/"):
            hint = " (they differ only by the trailing slash: write it exactly as discovered)"
        warn_repeated(log, "oidc provider %s: issuer mismatch: configured issuer %s, but its discovery document (%s) names %s%s; "
                    "set oidc.providers.%s.issuer to the provider's issuer, or point it at the right provider",
                    self.name, configured, printable(url), found, hint, self.name)
        return provider_error(502, ErrorCode.PROVIDER_MISCONFIGURED,
                              f"Issuer mismatch: this gateway is configured with the issuer {configured}, but the identity "
                              f"provider's discovery document names {found}{hint}")

    def _jwks_settings(self, metadata: Metadata) -> ExternalIssuer:
        s = self.settings
        return ExternalIssuer(
            issuer=metadata.issuer, audience=s.client_id, jwks_url=metadata.jwks_uri, algorithms=s.algorithms,
            leeway=s.leeway, fetch_timeout=self.timeout, allow_http=s.allow_http, kid_refetch_interval=1,
        )

    async def key(self, kid: str, alg: str) -> Any:
        """The provider's public key for ``kid``: an unknown kid re-fetches the JWKS (rotation)."""
        await self.metadata()
        assert self.jwks is not None  # set by every successful discovery
        return await self.jwks.key(kid, alg)

    # -- the flow --------------------------------------------------------------------

    async def authorization_url(self, redirect_uri: str, state: str, nonce: str, challenge: str,
                                extra: Mapping[str, str] | None = None) -> str:
        """The authorization request; ``extra`` (a step-up's ``max_age``, ``acr_values``, ``prompt``) wins over
        ``extra_params``, the protocol's own parameters over both."""
        metadata = await self.metadata()
        params = {
            **self.settings.extra_params, **(extra or {}),
            "response_type": "code", "client_id": self.settings.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(self.settings.scopes), "state": state, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256",
        }
        return str(URL(metadata.authorization_endpoint).update_query(params))

    def _client_auth(self, token_endpoint: str, secret: str | None) -> tuple[dict[str, str], dict[str, str]]:
        """Headers and form fields that authenticate the gateway at the token endpoint."""
        s = self.settings
        if s.auth_method == "private_key_jwt":
            now = int(time.time())
            assertion = jwt.encode(
                {"iss": s.client_id, "sub": s.client_id, "aud": token_endpoint, "jti": secrets.token_urlsafe(16),
                 "iat": now, "exp": now + 60},
                self._private_key, algorithm=s.private_key_algorithm, headers={"kid": s.private_key_id or ""},
            )
            return {}, {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        "client_assertion": assertion, "client_id": s.client_id}
        assert secret is not None
        if s.auth_method == "client_secret_post":
            return {}, {"client_id": s.client_id, "client_secret": secret}
        # RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
        pair = f"{quote(s.client_id, safe='')}:{quote(secret, safe='')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}, {}

    async def exchange(self, code: str, verifier: str, redirect_uri: str, secret: str | None) -> Mapping[str, Any]:
        """The token endpoint's answer for ``code``. A refusal names the provider's OAuth error (RFC 6749 §5.2):
        502 ``provider_misconfigured`` when the gateway's client registration is at fault (``invalid_client``,
        ``unauthorized_client``, ``unsupported_grant_type``), else 401 ``code_rejected``."""
        metadata = await self.metadata()
        headers, form = self._client_auth(metadata.token_endpoint, secret)
        form.update(grant_type="authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier)
        status, body = await self._request("token", "POST", metadata.token_endpoint, data=form,
                                           headers={**headers, "Accept": "application/json"})
        if status in (400, 401) and isinstance(body, dict) and isinstance(body.get("error"), str):
            sent = (code, verifier, secret, form.get("client_assertion"), headers.get("Authorization", "").removeprefix("Basic "))
            hidden = [v for v in sent if v]  # what the gateway sent that must not come back in a log or a page
            error = oauth_error(body["error"], body.get("error_description"), hidden)
            if error.code in CLIENT_ERRORS:
                warn_repeated(log, "oidc provider %s: token endpoint refused the gateway's client: %s; check client_id, "
                            "client_auth and the client secret or key registered at the provider", self.name, error)
                raise provider_error(502, ErrorCode.PROVIDER_MISCONFIGURED,
                                     f"The identity provider refused this gateway's client ({error}); check client_id, "
                                     "client_auth and client_secret (or the private key) against the provider's registration")
            log.info("oidc provider %s: token endpoint refused the code: %s", self.name, error)
            raise GatewayError.unauthorized(ErrorCode.CODE_REJECTED, f"The identity provider refused the sign-in code ({error})",
                                            token_presented=False)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            warn_repeated(log, "oidc provider %s: token endpoint answered HTTP %d without an ID token", self.name, status)
            raise provider_error(502, ErrorCode.PROVIDER_ERROR, "The identity provider's token endpoint answered without an ID token")
        return body

    async def userinfo(self, access_token: str) -> Mapping[str, Any]:
        metadata = await self.metadata()
        if metadata.userinfo_endpoint is None:
            raise provider_error(502, ErrorCode.PROVIDER_ERROR, "The identity provider has no userinfo endpoint")
        status, body = await self._request("userinfo", "GET", metadata.userinfo_endpoint,
                                           headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"})
        if status != 200 or not isinstance(body, dict):
            raise provider_error(502, ErrorCode.PROVIDER_ERROR, "The identity provider's userinfo endpoint failed")
        return body

    async def end_session_url(self, id_token: str | None, post_logout_redirect_uri: str | None) -> str | None:
        """RP-initiated logout (OIDC RP-Initiated Logout 1.0) at the provider, or None if it offers none."""
        try:
            metadata = await self.metadata()
        except GatewayError:
            return None  # the gateway's session is over either way
        if metadata.end_session_endpoint is None:
            return None
        params = {"client_id": self.settings.client_id}
        if id_token:
            params["id_token_hint"] = id_token
        if post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = post_logout_redirect_uri
        return str(URL(metadata.end_session_endpoint).update_query(params))

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()
