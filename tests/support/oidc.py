"""A real OpenID Provider for the OIDC sign-in tests: panva's certified ``oidc-provider`` 8.8.1 (npm, pinned by
tests/support/oidc_provider/package-lock.json) on a free loopback port, plus helpers that walk its pages.

    users = [OidcUser("alice", "alice-pw", email="alice@example.com", groups=("admins",))]
    clients = [OidcClient("gateway", [f"http://127.0.0.1:{gw_port}/auth/oidc/test/callback"], client_secret="s3cret")]
    async with OidcProvider(tmp_path, clients, users) as op:       # or op.start() / op.stop() in a fixture
        op.issuer                                                    # http://127.0.0.1:<port>, known before start()
        async with client_session() as session:                     # a cookie jar that keeps 127.0.0.1's cookies
            callback = await sign_in(session, gateway_login_url, "alice", "alice-pw")
            await session.get(callback, allow_redirects=False)      # the gateway's callback answers

- The provider: plain http on 127.0.0.1 (oidc-provider accepts an http issuer and http redirect URIs for
  code-flow web clients), PKCE S256 required, client auth client_secret_basic / client_secret_post /
  private_key_jwt, RP-initiated logout and back-channel logout on, its own login (password checked) and
  consent pages, claims of the ``profile`` scope (name, groups, each user's extra claims) in the ID token as
  well as at userinfo (``conform_id_token_claims=True`` keeps them to userinfo only, oidc-provider's default).
  ``id_token_signing_algs`` replaces the ID-token algorithms it supports (``["RS256", "HS256"]`` lets a client
  registered with ``id_token_signed_response_alg: HS256`` get HS256 ID tokens). Cookie names are
  ``op_*`` because the gateway under test shares the host 127.0.0.1 and cookies ignore ports.
- Key rotation: ``rotate_keys()`` restarts the provider on the same port with a new RS256 signing key
  (``keep_old=True`` still publishes the old one). A restart loses the provider's own sessions, grants and
  codes (its store is in memory); the gateway's sessions are unaffected.
- How a sign-in went: ``sign_in(..., amr="pwd,otp", acr="mfa", ts=...)`` types them into the provider's login form,
  and its ID token then carries them (``acr_values=[...]`` lists the acr values the provider supports).
- A provider that is down: ``stop()`` (and ``start()`` again on the same port); slow: ``set_delay()``.
- Back-channel logout: ``end_session()`` walks the provider's logout confirmation for the session's user,
  which makes the provider POST a logout token to every client of that session that registered a
  ``backchannel_logout_uri``; ``backchannel_logout(client_id, sub, sid)`` sends one directly.
"""
from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Sequence

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from yarl import URL

from tests.support.processes import BOUND, INSTALL_HINT, ServerProcess, free_port

HERE = Path(__file__).resolve().parent / "oidc_provider"
MAX_STEPS = 12  # redirects and pages of one sign-in or sign-out: the real flow takes about six


# -- keys ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RsaKey:
    """An RS256 key: ``private_pem`` for a file (``private_key_jwt`` at the gateway), JWKs for the provider."""

    kid: str
    private_pem: bytes
    private_jwk: dict[str, Any]
    public_jwk: dict[str, Any]

    def write(self, path: Path) -> Path:
        path.write_bytes(self.private_pem)
        path.chmod(0o600)
        return path


def rsa_key(kid: str) -> RsaKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    meta = {"kid": kid, "use": "sig", "alg": "RS256"}  # no key_ops: PyJWT's ["sign"] keeps the provider from verifying
    private_jwk = {**json.loads(RSAAlgorithm.to_jwk(private)), **meta}
    public_jwk = {**json.loads(RSAAlgorithm.to_jwk(private.public_key())), **meta}
    private_jwk.pop("key_ops", None)
    public_jwk.pop("key_ops", None)
    return RsaKey(kid, pem, private_jwk, public_jwk)


# -- what the provider knows --------------------------------------------------------------------------------

@dataclass(frozen=True)
class OidcUser:
    """A user of the provider; ``login`` (default: ``sub``) or ``email`` is typed into its login form."""

    sub: str
    password: str
    email: str = ""
    name: str = ""
    groups: tuple[str, ...] = ()
    login: str = ""
    claims: dict[str, Any] = field(default_factory=dict)  # extra ID-token/userinfo claims, nested ones too

    def spec(self) -> dict[str, Any]:
        return {"sub": self.sub, "password": self.password, "email": self.email or f"{self.sub}@example.com",
                "name": self.name or self.sub, "groups": list(self.groups), "login": self.login or self.sub,
                "claims": self.claims}


@dataclass
class OidcClient:
    """A client registered at the provider, as an operator registers the gateway at a real IdP.

    ``client_secret`` for client_secret_basic (default) or client_secret_post; ``key`` (its public JWK is
    registered) for private_key_jwt. ``metadata`` adds or overrides any registered client metadata, e.g.
    ``{"id_token_signed_response_alg": "ES256"}``.
    """

    client_id: str
    redirect_uris: list[str]
    client_secret: str | None = None
    key: RsaKey | None = None
    token_endpoint_auth_method: str = ""
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def registration(self) -> dict[str, Any]:
        method = self.token_endpoint_auth_method or ("private_key_jwt" if self.key else "client_secret_basic")
        reg: dict[str, Any] = {"client_id": self.client_id, "redirect_uris": self.redirect_uris,
                               "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                               "token_endpoint_auth_method": method,
                               "post_logout_redirect_uris": self.post_logout_redirect_uris}
        if self.client_secret is not None:
            reg["client_secret"] = self.client_secret
        if self.key is not None:
            reg["jwks"] = {"keys": [self.key.public_jwk]}
        if self.backchannel_logout_uri:
            reg["backchannel_logout_uri"] = self.backchannel_logout_uri
            reg["backchannel_logout_session_required"] = True
        return {**reg, **self.metadata}


# -- the launcher -------------------------------------------------------------------------------------------

class OidcProvider:
    """oidc-provider as a node process on a free port chosen at construction (``issuer`` is known before
    ``start()``, so a gateway config and redirect URIs can be written first). ``clients`` and ``users`` may
    be changed before ``start()`` or before a ``restart()``."""

    def __init__(self, tmp: Path, clients: Sequence[OidcClient] = (), users: Sequence[OidcUser] = (), *,
                 conform_id_token_claims: bool = False, id_token_signing_algs: Sequence[str] = (), port: int = 0,
                 acr_values: Sequence[str] = ()) -> None:
        self.tmp = tmp
        self.clients = list(clients)
        self.users = list(users)
        self.conform_id_token_claims = conform_id_token_claims
        self.id_token_signing_algs = list(id_token_signing_algs)  # empty: oidc-provider's default list
        self.acr_values = list(acr_values)  # the acr values the provider supports (a login form's `acr` is one)
        self.keys = [rsa_key("op-key-1")]  # the first signs; every one is published in the JWKS
        self._generation = 1
        node = shutil.which("node")
        if node is None or not (HERE / "node_modules" / "oidc-provider").is_dir():
            pytest.fail(f"node or tests/support/oidc_provider/node_modules is missing: {INSTALL_HINT} (npm ci)")
        self._server = ServerProcess("oidc-provider", self._command, tmp, port=port or free_port())

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def signing_kid(self) -> str:
        return self.keys[0].kid

    def _command(self, port: int, tmp: Path) -> list[str]:
        config = {"port": port, "issuer": self.issuer, "jwks": {"keys": [k.private_jwk for k in self.keys]},
                  "clients": [c.registration() for c in self.clients], "users": [u.spec() for u in self.users],
                  "conform_id_token_claims": self.conform_id_token_claims,
                  "id_token_signing_algs": self.id_token_signing_algs or None, "acr_values": self.acr_values}
        path = tmp / f"oidc-provider-{port}.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return [str(shutil.which("node")), str(HERE / "provider.mjs"), str(path)]

    def start(self) -> "OidcProvider":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._server.proc is not None and self._server.proc.poll() is None

    def rotate_keys(self, keep_old: bool = False) -> str:
        """A new signing key (restart on the same port); returns its kid. ``keep_old``: the old key stays in
        the JWKS (a rollover), else it is gone (a compromised key withdrawn)."""
        self._generation += 1
        self.keys = [rsa_key(f"op-key-{self._generation}"), *(self.keys if keep_old else [])]
        self.restart()
        return self.signing_kid

    def log(self) -> str:
        """Everything the provider printed (back-channel deliveries: ``backchannel.success client=... sid=...``)."""
        return self._server.log_path.read_text(errors="replace") if self._server.log_path.exists() else ""

    async def __aenter__(self) -> "OidcProvider":
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    async def _admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BOUND)) as http:
            async with http.post(f"{self.issuer}/__harness/{path}", json=body) as resp:
                result: dict[str, Any] = await resp.json(content_type=None)
                return result

    async def set_delay(self, seconds: float, prefix: str = "/") -> None:
        """Every answer to a path under ``prefix`` (e.g. ``/token``, ``/jwks``) waits ``seconds`` first; 0 ends it."""
        await self._admin("delay", {"ms": int(seconds * 1000), "prefix": prefix})

    async def backchannel_logout(self, client_id: str, sub: str, sid: str | None = None) -> dict[str, Any]:
        """The provider sends one logout token (``sub``, and ``sid`` when given) to the client's
        ``backchannel_logout_uri``; ``{"ok": false, "error": ...}`` when the client did not answer 200/204."""
        return await self._admin("backchannel-logout", {"client_id": client_id, "sub": sub, "sid": sid})


# -- walking the provider's pages with a plain HTTP client ----------------------------------------------------

class SignInFailed(AssertionError):
    """The provider refused the password or showed an error page instead of redirecting back."""


def client_session() -> aiohttp.ClientSession:
    """A session whose cookie jar keeps cookies of 127.0.0.1 (aiohttp's default jar drops IP-address cookies)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=BOUND))


@dataclass
class _Form:
    id: str
    action: str
    fields: dict[str, str]


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(a.get("id", ""), a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("type") == "hidden" and a.get("name"):
            self.forms[-1].fields[a["name"]] = a.get("value", "")


def _forms(html: str) -> dict[str, _Form]:
    parser = _Forms()
    parser.feed(html)
    return {form.id: form for form in parser.forms}


def _is_authorization_response(url: URL) -> bool:
    return "state" in url.query and ("code" in url.query or "error" in url.query)


async def sign_in(session: aiohttp.ClientSession, login_url: str, user: str, password: str, **said: str) -> URL:
    """Start at ``login_url`` (the gateway's ``/auth/oidc/<provider>/login?...`` or a provider authorization
    URL), follow redirects, fill the provider's login and consent forms, and return the authorization
    response: the redirect to the client's callback carrying ``code`` (or ``error``) and ``state``. It is
    not followed: GET it with the same session and ``allow_redirects=False`` to see the gateway's answer.
    A provider session that is still signed in skips the forms. ``session`` needs a jar that keeps
    127.0.0.1's cookies (:func:`client_session`); over plain http it sends no ``Secure`` cookie, so a gateway
    under test on http needs ``cookies.secure: false`` (its sign-in binding cookie follows that setting;
    Chromium, unlike aiohttp, treats 127.0.0.1 as secure). Raises :class:`SignInFailed` on a refused password or an
    error page, with the page's text. ``said`` goes with the login form: ``amr="pwd,otp"``, ``acr="mfa"``, ``ts=<epoch
    seconds>`` make the provider's ID token say so (``amr``, ``acr``, ``auth_time``)."""
    url, method, data = URL(login_url), "GET", None
    for _ in range(MAX_STEPS):
        async with session.request(method, url, data=data, allow_redirects=False) as resp:
            body = await resp.text()
            if resp.status in (301, 302, 303, 307, 308):
                url, method, data = url.join(URL(resp.headers["Location"])), "GET", None
                if _is_authorization_response(url):
                    return url
                continue
        forms = _forms(body)
        if "login" in forms and resp.status == 200:
            if not session.cookie_jar.filter_cookies(url):
                raise SignInFailed("the provider's cookies were dropped: use a session from client_session()")
            url, method, data = url.join(URL(forms["login"].action)), "POST", {"login": user, "password": password, **said}
        elif "consent" in forms and resp.status == 200:
            url, method, data = url.join(URL(forms["consent"].action)), "POST", {}
        elif "" in forms and resp.status == 200 and "Submitting Callback" in body:
            # another user signed in over the provider's session: its page ends that session and submits itself
            url, method, data = url.join(URL(forms[""].action)), "POST", forms[""].fields
        else:
            raise SignInFailed(f"{resp.status} at {url.with_query(None)}: {body[:2000]}")
    raise SignInFailed(f"no authorization response after {MAX_STEPS} steps (last: {url.with_query(None)})")


async def end_session(session: aiohttp.ClientSession, end_session_url: str) -> URL:
    """Sign out at the provider: open ``end_session_url`` (the provider's end_session_endpoint, with or without
    ``id_token_hint`` and ``post_logout_redirect_uri``, e.g. the gateway's ``end_session_url``), confirm, and
    return where the provider sends the browser (the validated ``post_logout_redirect_uri``, or its own
    signed-out page). Confirming makes the provider deliver the back-channel logout tokens first."""
    url, method, data = URL(end_session_url), "GET", None
    for _ in range(MAX_STEPS):
        async with session.request(method, url, data=data, allow_redirects=False) as resp:
            body = await resp.text()
            if resp.status in (301, 302, 303, 307, 308):
                url, method, data = url.join(URL(resp.headers["Location"])), "GET", None
                if url.origin() != URL(end_session_url).origin():
                    return url
                continue
        form = _forms(body).get("op.logoutForm")
        if resp.status == 200 and form is not None:
            url, method, data = url.join(URL(form.action)), "POST", {**form.fields, "logout": "yes"}
        elif resp.status == 200 and 'id="signed-out"' in body:
            return url
        else:
            raise SignInFailed(f"{resp.status} at {url.with_query(None)}: {body[:2000]}")
    raise SignInFailed(f"sign-out did not finish after {MAX_STEPS} steps (last: {url.with_query(None)})")

