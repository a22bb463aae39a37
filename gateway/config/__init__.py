"""Configuration: one YAML file, parsed and validated once into frozen objects.

Every problem in a file is reported at once, each with its location
(``routes[2].upstream: not an absolute http(s) URL``), so an operator fixes a
bad file in one pass and a half-configured gateway never starts.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from yarl import URL

from gateway.config.boundary import EXAMPLE_SECRETS, ClientHeaders, Paths
from gateway.config.limits import Limits, RateLimit, WebsocketSession
from gateway.redis_url import parse_redis_url
from gateway.net import is_loopback, parse_host
from gateway.sources.settings import SourceSpec, resolve_source_paths

__all__ = [
    "Compat",
    "CompatProfile",
    "ConfigError",
    "Cookies",
    "Cors",
    "ExternalIssuer",
    "GatewayConfig",
    "IdentityJwt",
    "KeySpec",
    "LoginThrottle",
    "Route",
    "WebsocketToken",
    "load_config",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_QUERY_NAME = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
# Headers a route may never set itself: they belong to the transport or to the client.
_RESERVED_HEADERS = frozenset(
    "host authorization content-length transfer-encoding connection keep-alive upgrade te "
    "trailer proxy-authorization proxy-authenticate cookie set-cookie x-forwarded-for "
    "x-forwarded-proto x-forwarded-host x-request-id".split()
)


class ConfigError(Exception):
    """A configuration that must not start; ``problems`` lists every location at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``15m``, ``14d``, ``250ms`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("not a duration (write e.g. 30s, 15m, 14d)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (write e.g. 30s, 15m, 14d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


SIGNING_ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
# What an external issuer may sign with: asymmetric only, so a public JWKS can never be an HMAC secret.
EXTERNAL_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
OWN_ISSUER = "gateway"  # the name a route's ``issuers`` uses for the gateway's own tokens
_KID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MIN_HS256_SECRET = 32


def _one_of(spec: BaseModel, fields: tuple[str, ...]) -> int:
    given = [f for f in fields if getattr(spec, f) is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(given)}")
    return len(given)


class KeySpec(_Model):
    """One key of the ring: where its material comes from, and whether it signs new tokens.

    Material is read when the key ring is built (``keys.KeyRing.from_config``),
    so a missing file or variable is a configuration error at start and reload.
    """

    kid: str
    algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"]
    active: bool = False
    secret: SecretStr | None = None
    secret_file: Path | None = None
    private_key_file: Path | None = None
    private_key_env: str | None = None
    public_key_file: Path | None = None
    public_key_env: str | None = None

    @field_validator("kid")
    @classmethod
    def _kid(cls, value: str) -> str:
        if not _KID.match(value):
            raise ValueError("a kid is 1-64 characters of A-Z a-z 0-9 . _ ~ -")
        return value

    @model_validator(mode="after")
    def _material(self) -> "KeySpec":
        secrets = _one_of(self, ("secret", "secret_file"))
        private = _one_of(self, ("private_key_file", "private_key_env"))
        public = _one_of(self, ("public_key_file", "public_key_env"))
        if self.algorithm == "HS256":
            if private or public or not secrets:
                raise ValueError("an HS256 key needs secret or secret_file, and no PEM keys")
            if self.secret is not None and len(self.secret.get_secret_value().encode()) < MIN_HS256_SECRET:
                raise ValueError("HS256 needs a secret of at least 32 bytes (RFC 7518 §3.2)")
        elif secrets or not (private or public):
            raise ValueError(f"an {self.algorithm} key needs a private or public PEM key (file or env), not a secret")
        return self


class Tokens(_Model):
    """How the gateway mints and checks its own tokens.

    Either the short form (``algorithm: HS256`` + ``secret``: one HS256 key) or
    a ``keys`` list with exactly one active signing key.
    """

    algorithm: str = "HS256"
    secret: SecretStr | None = None
    keys: tuple[KeySpec, ...] = ()
    signing_kid: str | None = None
    jwks_max_age: Duration = 300
    issuer: str = "gateway"
    audience: str = "gateway"
    access_lifetime: Duration = 15 * 60
    refresh_lifetime: Duration = 14 * 86400
    leeway: Duration = 10
    refresh_grace: Duration = 10
    rotate_refresh: bool = True
    max_sessions_per_user: int = Field(25, ge=1)  # live refresh families; a new login revokes the oldest

    @field_validator("algorithm")
    @classmethod
    def _short_form_algorithm(cls, value: str) -> str:
        if value != "HS256":
            raise ValueError("the short form (algorithm + secret) is HS256 only; list RS256/ES256/EdDSA keys under keys:")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_HS256_SECRET:
            raise ValueError("HS256 needs a secret of at least 32 bytes (RFC 7518 §3.2)")
        return value

    @model_validator(mode="after")
    def _key_forms(self) -> "Tokens":
        if self.keys:
            if self.secret is not None:
                raise ValueError("give either secret (one HS256 key) or keys, not both")
            kids = [k.kid for k in self.keys]
            duplicates = sorted({k for k in kids if kids.count(k) > 1})
            if duplicates:
                raise ValueError(f"keys: duplicate kids {duplicates}")
            self._signing_spec()
        else:
            if self.secret is None:
                raise ValueError("secret: required (or give a keys list)")
        return self

    def _signing_spec(self) -> KeySpec:
        flagged = [k for k in self.keys if k.active]
        if self.signing_kid is not None:
            if flagged and [k.kid for k in flagged] != [self.signing_kid]:
                raise ValueError("signing_kid and the active flags disagree; use one of them")
            chosen = [k for k in self.keys if k.kid == self.signing_kid]
            if not chosen:
                raise ValueError(f"signing_kid: no key has kid {self.signing_kid!r}")
        else:
            chosen = flagged
            if len(chosen) != 1:
                raise ValueError("keys: exactly one key must be active (active: true, or signing_kid)")
        spec = chosen[0]
        if spec.algorithm != "HS256" and spec.private_key_file is None and spec.private_key_env is None:
            raise ValueError(f"keys: the active key {spec.kid!r} needs its private key")
        return spec

    @property
    def signing_algorithm(self) -> str:
        """The algorithm new tokens are signed with."""
        return self._signing_spec().algorithm if self.keys else "HS256"

    @model_validator(mode="after")
    def _lifetimes(self) -> "Tokens":
        if self.access_lifetime <= 0 or self.refresh_lifetime <= 0:
            raise ValueError("access_lifetime and refresh_lifetime must be positive")
        if self.access_lifetime > self.refresh_lifetime:
            raise ValueError("access_lifetime must not exceed refresh_lifetime")
        return self


class Store(_Model):
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None
    prefix: str = "gw:"
    timeout: Duration = 1.0
    # What a proxied request does when the revocation check cannot reach the store:
    # fail_closed answers 503, fail_open serves on the signature check alone (logged).
    failure_mode: Literal["fail_closed", "fail_open"] = "fail_closed"
    # Redis only: answer "is this access token revoked?" from a local cache kept current
    # by pub/sub; a "not revoked" answer is trusted for at most this long. 0 = ask Redis
    # on every request (see gateway/stores/revocation_cache.py for the staleness bound).
    revocation_cache: Duration = 0.0

    @model_validator(mode="after")
    def _redis_needs_url(self) -> "Store":
        if self.backend == "redis":
            if not self.url:
                raise ValueError("url: required when backend is redis")
            try:
                parse_redis_url(self.url)
            except ValueError as exc:
                raise ValueError(f"url: {exc}") from None
        if self.timeout <= 0:
            raise ValueError("timeout: must be positive")
        if self.revocation_cache > 0 and self.backend != "redis":
            raise ValueError("revocation_cache: only with backend redis (the memory store is already local)")
        return self

    def connection_settings(self) -> tuple[str, str | None, str, float]:
        """What a running store is built from; a reload cannot change these (restart instead)."""
        return (self.backend, self.url, self.prefix, self.timeout)


def _path(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "//" in value:
        raise ValueError("must be an absolute path like /auth/token")
    if any(seg in {".", ".."} for seg in value.split("/")):
        raise ValueError("must not contain . or .. segments")
    return value.rstrip("/") or "/"


AbsPath = Annotated[str, BeforeValidator(_path)]


class Endpoints(_Model):
    """Paths of the gateway's own endpoints; a trailing slash is accepted on each."""

    token: AbsPath = "/auth/token"
    refresh: AbsPath = "/auth/token/refresh"
    verify: AbsPath = "/auth/token/verify"
    logout: AbsPath = "/auth/logout"
    me: AbsPath = "/auth/me"
    healthz: AbsPath = "/healthz"
    readyz: AbsPath = "/readyz"
    client_js: AbsPath = "/auth/client.js"
    jwks: AbsPath = "/.well-known/jwks.json"
    openid_configuration: AbsPath = "/.well-known/openid-configuration"


class Shutdown(_Model):
    """SIGTERM: stop accepting, let in-flight requests finish for up to ``drain_timeout``."""

    drain_timeout: Duration = 30.0
    # /readyz answers 503 for this long before the listener closes, so a load balancer
    # stops sending new connections first (Kubernetes: a little over the probe period).
    readiness_delay: Duration = 0.0


class Metrics(_Model):
    enabled: bool = True
    path: AbsPath = "/metrics"
    # Without an admin listener, /metrics on the main listener answers loopback peers only
    # (and not through a proxy: no X-Forwarded-For/Forwarded); public: true serves everyone.
    public: bool = False


class Admin(_Model):
    """A second listener for /metrics, /healthz and /readyz, kept off the public port."""

    host: str = "127.0.0.1"
    port: int = Field(9090, ge=0, le=65535)


class Requirements(_Model):
    """Claims a token must carry for a route: any of the roles, all of the scopes, equal claims."""

    roles_any: tuple[str, ...] = ()
    scopes_all: tuple[str, ...] = ()
    claims: dict[str, str | int | bool] = {}


def _check_header_name(name: str) -> str:
    if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
        raise ValueError(f"{name!r} is not a header the gateway may inject")
    return name


class IdentityJwt(_Model):
    """A short-lived JWT for the upstream, signed by the gateway's active asymmetric key."""

    header: str = "X-Gateway-Identity"
    lifetime: Duration = 60
    audience: str | None = None  # default: the route's upstream URL

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return _check_header_name(value)

    @field_validator("lifetime")
    @classmethod
    def _lifetime(cls, value: float) -> float:
        if not 1 <= value <= 600:
            raise ValueError("must be between 1s and 10m: the token is meant for one hop")
        return value


class WebsocketToken(_Model):
    """Where a websocket handshake may carry its token besides ``Authorization``: browsers cannot set headers."""

    query_param: str | None = None  # e.g. access_token; removed from the query the upstream sees
    subprotocol_prefix: str | None = None  # e.g. "bearer." for Sec-WebSocket-Protocol: bearer.<token>

    @field_validator("query_param")
    @classmethod
    def _query_param(cls, value: str | None) -> str | None:
        if value is not None and not _QUERY_NAME.match(value):
            raise ValueError("must be a plain query parameter name (letters, digits, . _ ~ -)")
        return value

    @field_validator("subprotocol_prefix")
    @classmethod
    def _subprotocol_prefix(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.match(value):
            raise ValueError("must be an RFC 7230 token (no spaces, commas or quotes)")
        return value

    @property
    def enabled(self) -> bool:
        return self.query_param is not None or self.subprotocol_prefix is not None


class Route(_Model):
    name: str = ""
    prefix: AbsPath
    methods: tuple[str, ...] | None = None
    host: str | None = None
    upstream: str
    strip_prefix: bool = False
    auth: Literal["required", "optional", "none"] = "required"
    require: Requirements = Requirements()
    headers: dict[str, str] = {}
    timeout: Duration = 30.0
    forward_authorization: bool = False
    preserve_host: bool = False
    issuers: tuple[str, ...] = (OWN_ISSUER,)
    identity_jwt: IdentityJwt | None = None
    websocket: bool = False
    websocket_token: WebsocketToken = WebsocketToken()
    websocket_session: WebsocketSession = WebsocketSession()  # limits_config.py
    rate_limit: RateLimit | None = None  # limits_config.py, rate_limit.py

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        upper = tuple(m.upper() for m in value)
        if not upper or any(not _HEADER_NAME.match(m) for m in upper):
            raise ValueError("must be a non-empty list of HTTP methods")
        return upper

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        """Normalised like a request's Host (lowercase, no trailing dot); the port never matters."""
        if not value:
            return None
        wildcard = value.startswith("*.")
        try:
            name = parse_host(value[2:] if wildcard else value).name
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a host name ({exc})") from None
        return f"*.{name}" if wildcard else name

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in {"http", "https"} or not url.host or url.query_string or url.fragment:
            raise ValueError("not an absolute http(s) URL without query or fragment")
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, claim in value.items():
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name!r} is not a header the gateway may inject")
            if not isinstance(claim, str) or not claim:
                raise ValueError(f"{name}: the value must be a claim name")
        return value

    @model_validator(mode="after")
    def _auth_consistency(self) -> "Route":
        wants = self.require.roles_any or self.require.scopes_all or self.require.claims
        if wants and self.auth != "required":
            raise ValueError("require: needs auth: required")
        if self.headers and self.auth == "none":
            raise ValueError("headers: a route with auth: none has no identity to inject")
        if self.timeout <= 0:
            raise ValueError("timeout: must be positive")
        if self.identity_jwt and self.auth == "none":
            raise ValueError("identity_jwt: a route with auth: none has no identity to sign")
        if not self.issuers:
            raise ValueError("issuers: list at least one issuer (gateway for the gateway's own tokens)")
        if self.identity_jwt and self.identity_jwt.header.lower() in {h.lower() for h in self.headers}:
            raise ValueError("identity_jwt.header: already used by headers")
        if self.websocket_token.enabled and not self.websocket:
            raise ValueError("websocket_token: needs websocket: true")
        if (self.websocket_session.max_lifetime or self.websocket_session.idle_timeout) and not self.websocket:
            raise ValueError("websocket_session: needs websocket: true")
        if self.websocket_token.enabled and self.auth == "none":
            raise ValueError("websocket_token: a route with auth: none takes no token")
        return self


# -- browser-facing settings: compatibility profiles, cookie mode, CORS ---------------------

ErrorStyleName = Literal["gateway", "simplejwt", "flask-jwt-extended"]
ProfileName = Literal["gateway", "simplejwt", "djoser", "flask-jwt-extended", "custom"]
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_COOKIE_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


def _field_name(value: Any) -> str:
    if not isinstance(value, str) or not _FIELD.match(value):
        raise ValueError(f"{value!r} is not a JSON field name")
    return value


FieldName = Annotated[str, BeforeValidator(_field_name)]

# What each named profile means; ``prefix`` is put in front of these paths (never in front of
# paths given explicitly under ``paths``). rotate_refresh None: follow tokens.rotate_refresh.
PROFILE_PRESETS: dict[str, dict[str, Any]] = {
    "gateway": {
        "prefix": "",
        "paths": {"login": "/auth/token", "refresh": "/auth/token/refresh", "verify": "/auth/token/verify",
                  "logout": "/auth/logout", "me": "/auth/me"},
        "errors": "gateway",
        "rotate_refresh": None,
    },
    "simplejwt": {
        "prefix": "/api",
        "paths": {"login": "/token", "refresh": "/token/refresh", "verify": "/token/verify", "logout": "/token/blacklist"},
        "response": {"extras": False},
        "errors": "simplejwt",
        "rotate_refresh": False,  # SimpleJWT's ROTATE_REFRESH_TOKENS default
    },
    "djoser": {
        "prefix": "",
        "paths": {"login": "/auth/jwt/create", "refresh": "/auth/jwt/refresh", "verify": "/auth/jwt/verify",
                  "me": "/auth/users/me"},
        "response": {"extras": False},
        "errors": "simplejwt",
        "rotate_refresh": False,
        "me_fields": {"email": "email", "id": "user_id|id|sub", "username": "sub"},
    },
    "flask-jwt-extended": {
        "prefix": "",
        "paths": {"login": "/auth/jwt/create", "refresh": "/auth/jwt/refresh"},
        "request": {"username": "email"},
        "login_claim": "email",
        "refresh_from": "bearer",
        "response": {"access": "access_token", "refresh": "refresh_token", "extras": False},
        "errors": "flask-jwt-extended",
        "rotate_refresh": False,
    },
    "custom": {"prefix": "", "paths": {}, "errors": "gateway", "rotate_refresh": False},
}


class CompatPaths(_Model):
    """Absolute paths of a profile's endpoints; a missing one is not served."""

    login: AbsPath | None = None
    refresh: AbsPath | None = None
    verify: AbsPath | None = None
    logout: AbsPath | None = None
    me: AbsPath | None = None


class CompatRequest(_Model):
    """Names of the request fields."""

    username: FieldName = "username"
    password: FieldName = "password"
    refresh: FieldName = "refresh"
    token: FieldName = "token"


class CompatResponse(_Model):
    """Names of the response fields; ``extras`` adds token_type and expires_in."""

    access: FieldName = "access"
    refresh: FieldName = "refresh"
    extras: bool = True


def _prefix(value: Any) -> str:
    if value in ("", "/", None):
        return ""
    try:
        return _path(value)
    except ValueError as exc:
        raise ValueError(f"prefix: {exc}") from None


class CompatProfile(_Model):
    """One dialect of the token endpoints, with the named profile's presets already filled in."""

    profile: ProfileName
    prefix: str = ""
    paths: CompatPaths = CompatPaths()
    request: CompatRequest = CompatRequest()
    response: CompatResponse = CompatResponse()
    login_claim: FieldName = "username"
    refresh_from: Literal["body", "bearer"] = "body"
    errors: ErrorStyleName = "gateway"
    rotate_refresh: bool | None = None
    me_fields: dict[str, str] | None = None
    cookies: bool = False

    @model_validator(mode="before")
    @classmethod
    def _fill_preset(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or raw.get("profile") not in PROFILE_PRESETS:
            return raw
        preset = PROFILE_PRESETS[raw["profile"]]
        prefix = _prefix(raw.get("prefix", preset["prefix"]))
        merged = {**preset, **raw, "prefix": prefix}
        for key in ("request", "response"):
            if isinstance(raw.get(key, {}), dict):
                merged[key] = {**preset.get(key, {}), **raw.get(key, {})}
        if isinstance(raw.get("paths", {}), dict):
            merged["paths"] = {**{k: prefix + v for k, v in preset["paths"].items()}, **raw.get("paths", {})}
        return merged

    @field_validator("me_fields")
    @classmethod
    def _me_fields(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, claims in (value or {}).items():
            _field_name(name)
            if not isinstance(claims, str) or not all(claims.split("|")):
                raise ValueError(f"{name}: write a claim name, or alternatives like user_id|sub")
        return value

    @model_validator(mode="after")
    def _has_paths(self) -> "CompatProfile":
        if not self.named_paths():
            raise ValueError("paths: the profile serves no endpoint (give at least one of login, refresh, verify, logout, me)")
        if self.me_fields is not None and self.paths.me is None:
            raise ValueError("me_fields: needs paths.me")
        return self

    def named_paths(self) -> dict[str, str]:
        """The served endpoints by role (login, refresh, ...), without the absent ones."""
        return {role: path for role, path in self.paths.model_dump().items() if path is not None}


class Compat(_Model):
    """Compatibility profiles, and how errors of proxied routes look (the deployment's main dialect)."""

    errors: ErrorStyleName = "gateway"
    profiles: tuple[CompatProfile, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, raw: Any) -> Any:
        return {"profiles": raw} if isinstance(raw, list) else raw


def _cookie_name(value: Any) -> str:
    if not isinstance(value, str) or not _COOKIE_NAME.match(value):
        raise ValueError(f"{value!r} is not a cookie name")
    return value


CookieName = Annotated[str, BeforeValidator(_cookie_name)]


class Cookies(_Model):
    """Cookie mode: tokens in HttpOnly cookies, CSRF by a signed double-submit token."""

    enabled: bool = False
    secure: bool = True
    same_site: Literal["Strict", "Lax", "None"] = "Strict"
    domain: str | None = None
    access_cookie: bool = True
    access_name: CookieName = "gw_access"
    refresh_name: CookieName = "gw_refresh"
    csrf_name: CookieName = "gw_csrf"
    csrf_header: str = "X-CSRF-Token"
    access_path: AbsPath = "/"
    refresh_path: AbsPath | None = None
    csrf_secret: SecretStr | None = None  # keys the CSRF tokens; default: tokens.secret

    @field_validator("csrf_secret")
    @classmethod
    def _csrf_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("needs at least 32 bytes")
        return value

    def csrf_key(self, tokens: "Tokens") -> bytes:
        """The CSRF key material: ``csrf_secret``, else the HS256 ``tokens.secret`` (validated to exist)."""
        secret = self.csrf_secret or tokens.secret
        assert secret is not None
        return secret.get_secret_value().encode()

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^\.?[a-z0-9-]+(\.[a-z0-9-]+)*$", value.lower()):
            raise ValueError(f"{value!r} is not a domain name")
        return value

    @field_validator("csrf_header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not _HEADER_NAME.match(value) or value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{value!r} is not a header name the gateway can use")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Cookies":
        names = [self.access_name, self.refresh_name, self.csrf_name]
        if len(set(names)) != 3:
            raise ValueError("access_name, refresh_name and csrf_name must differ")
        if self.same_site == "None" and not self.secure:
            raise ValueError("same_site: None needs secure: true (browsers drop it otherwise)")
        for name in names:
            if name.startswith(("__Secure-", "__Host-")) and not self.secure:
                raise ValueError(f"{name}: a __Secure-/__Host- cookie needs secure: true")
            if name.startswith("__Host-") and self.domain:
                raise ValueError(f"{name}: a __Host- cookie cannot have a domain")
        if self.refresh_name.startswith("__Host-") and self.refresh_path not in (None, "/"):
            raise ValueError("refresh_path: a __Host- cookie must have path /")
        return self


_ORIGIN = re.compile(r"^(https?)://(\*\.)?([a-z0-9.-]+|\[[0-9a-f:.]+\])(:\d{1,5})?$")


class Cors(_Model):
    """Cross-origin access; off while ``allow_origins`` is empty."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: tuple[str, ...] = ("Authorization", "Content-Type", "X-CSRF-Token", "X-Request-Id")
    allow_credentials: bool = False
    expose_headers: tuple[str, ...] = ("X-Request-Id",)
    max_age: Duration = 600

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for origin in value:
            lowered = origin.lower().rstrip("/")
            if lowered != "*" and not _ORIGIN.match(lowered):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], *.host allowed, or *)")
            out.append(lowered)
        return tuple(out)

    @field_validator("allow_methods", "allow_headers", "expose_headers")
    @classmethod
    def _tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if item != "*" and not _HEADER_NAME.match(item):
                raise ValueError(f"{item!r} is not a method or header name")
        return value

    @field_validator("allow_methods")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(m.upper() for m in value)

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> "Cors":
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_origins: '*' cannot be combined with allow_credentials: true (list the origins)")
        if self.allow_credentials and "*" in self.expose_headers:
            raise ValueError("expose_headers: '*' cannot be combined with allow_credentials: true (list the headers)")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)

def _absolute_url(value: str, allow_http: bool) -> None:
    url = URL(value)
    if url.scheme not in {"http", "https"} or not url.host or url.fragment:
        raise ValueError("jwks_url: not an absolute http(s) URL")
    loopback = url.host in {"localhost", "127.0.0.1", "::1"} or url.host.startswith("127.")
    if url.scheme == "http" and not (allow_http or loopback):
        raise ValueError("jwks_url: must be https (or set allow_http: true for a trusted network)")


class ExternalIssuer(_Model):
    """An identity provider whose bearer tokens routes may accept (``routes[].issuers``)."""

    issuer: str
    audience: str | tuple[str, ...]
    jwks_url: str
    algorithms: tuple[Literal[EXTERNAL_ALGORITHMS], ...] = ("RS256",)  # type: ignore[valid-type]
    claims: dict[str, str] = {}  # claim name used by routes -> claim (or dotted path) in the IdP's token
    leeway: Duration = 30
    max_token_lifetime: Duration = 86400
    jwks_default_ttl: Duration = 300  # when the JWKS answer has no max-age
    jwks_min_ttl: Duration = 30
    jwks_max_ttl: Duration = 86400
    kid_refetch_interval: Duration = 30  # an unknown kid re-fetches the JWKS at most this often
    fetch_timeout: Duration = 5
    allow_http: bool = False
    # Put before this issuer's ``sub`` so that its users never pass for local ones or another
    # issuer's (idp:alice, not alice). Default: the issuer's name and a colon; "" turns it off.
    subject_prefix: str | None = None

    @field_validator("subject_prefix")
    @classmethod
    def _subject_prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9._~:@/-]{0,64}$", value):
            raise ValueError("up to 64 characters of A-Z a-z 0-9 . _ ~ : @ / -")
        return value

    def prefix_for(self, name: str) -> str:
        """The subject prefix of this issuer, configured under ``external_issuers.<name>``."""
        return f"{name}:" if self.subject_prefix is None else self.subject_prefix

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, str]) -> dict[str, str]:
        fixed = {"iss", "aud", "exp", "iat", "nbf", "jti", "token_type", "fid"}
        for target, source in value.items():
            if target in fixed:
                raise ValueError(f"{target!r} is set from the verified token and cannot be mapped")
            if not isinstance(source, str) or not source:
                raise ValueError(f"{target}: the value must be a claim name or dotted path")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ExternalIssuer":
        _absolute_url(self.jwks_url, self.allow_http)
        if not self.algorithms:
            raise ValueError("algorithms: list at least one")
        if not self.audience:
            raise ValueError("audience: required")
        if self.kid_refetch_interval <= 0 or self.fetch_timeout <= 0:
            raise ValueError("kid_refetch_interval and fetch_timeout must be positive")
        if not 0 < self.jwks_min_ttl <= self.jwks_default_ttl <= self.jwks_max_ttl:
            raise ValueError("need 0 < jwks_min_ttl <= jwks_default_ttl <= jwks_max_ttl")
        return self


class LoginThrottle(_Model):
    """Failed logins allowed per username and per client IP within a window (counted in the store)."""

    enabled: bool = True
    per_user: int = Field(10, ge=1)
    per_ip: int = Field(50, ge=1)
    window: Duration = 15 * 60
    attempts_per_ip: int = Field(300, ge=1)  # every attempt, right or wrong (throttle.py)
    concurrent_per_ip: int = Field(4, ge=1)  # password checks in progress, per process
    concurrent_per_user: int = Field(2, ge=1)

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        if not 1 <= value <= 86400:
            raise ValueError("must be between 1s and 1d: a longer window locks users out for too long")
        return value


class GatewayConfig(_Model):
    listen: Listen = Listen()
    tokens: Tokens
    store: Store = Store()
    users_file: Path | None = None  # the users file; the same as users: [file: ...]
    users: tuple[SourceSpec, ...] | None = None  # identity sources in order (gateway/sources/settings.py)
    endpoints: Endpoints = Endpoints()
    identity_header_prefixes: tuple[str, ...] = ("X-User-", "X-Auth-")
    trust_forwarded_headers: bool = False
    routes: tuple[Route, ...] = ()
    shutdown: Shutdown = Shutdown()
    metrics: Metrics = Metrics()
    admin: Admin | None = None  # None: /metrics is served on the main listener
    compat: Compat = Compat()
    cookies: Cookies = Cookies()
    cors: Cors = Cors()
    external_issuers: dict[str, ExternalIssuer] = {}
    login_throttle: LoginThrottle = LoginThrottle()
    public_url: str | None = None  # the gateway's external base URL, for the discovery document
    client_headers: ClientHeaders = ClientHeaders()
    paths: Paths = Paths()
    server_header: str = "gateway"  # the Server header of the gateway's own answers; no versions
    development: bool = False  # allows the docs' example secrets on a non-loopback listener

    @field_validator("server_header")
    @classmethod
    def _server_header(cls, value: str) -> str:
        if not re.match(r"^[\x21-\x7e]([\x20-\x7e]{0,126}[\x21-\x7e])?$", value):
            raise ValueError("printable ASCII, 1-128 characters, no leading or trailing space")
        return value

    @model_validator(mode="after")
    def _no_example_secret(self) -> "GatewayConfig":
        """The secrets printed in the docs sign nobody's tokens outside a developer's own machine."""
        if self.development or is_loopback(self.listen.host):
            return self
        secrets = {"tokens.secret": self.tokens.secret, "cookies.csrf_secret": self.cookies.csrf_secret}
        secrets.update({f"tokens.keys[{k.kid}].secret": k.secret for k in self.tokens.keys})
        for where, secret in secrets.items():
            if secret is not None and secret.get_secret_value() in EXAMPLE_SECRETS:
                raise ValueError(
                    f"{where}: this is the example secret from the docs, so anyone can mint tokens for this gateway; "
                    "set GATEWAY_SECRET to at least 32 random bytes (python3 -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))'), or listen on a loopback address, or set development: true"
                )
        return self
    limits: Limits = Limits()  # limits_config.py

    @model_validator(mode="after")
    def _browser_settings(self) -> "GatewayConfig":
        problems = _endpoint_collisions(self) + _cookie_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = URL(value)
        if url.scheme not in {"http", "https"} or not url.host or url.query_string or url.fragment:
            raise ValueError("not an absolute http(s) URL without query or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_user_source(self) -> "GatewayConfig":
        if (self.users_file is None) == (self.users is None):
            raise ValueError("users_file: required (or users: a list of identity sources), not both")
        if self.users is not None and not self.users:
            raise ValueError("users: needs at least one source")
        return self

    @model_validator(mode="after")
    def _unique_route_names(self) -> "GatewayConfig":
        names = [r.name for r in self.routes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"routes: duplicate route names {duplicates}")
        return self

    @model_validator(mode="after")
    def _trust(self) -> "GatewayConfig":
        """Issuer names resolve, never collide with the gateway's own, and signed identity has a key."""
        problems = []
        for name, ext in self.external_issuers.items():
            if name == OWN_ISSUER or not _NAME.match(name):
                problems.append(f"external_issuers.{name}: not a usable name ({OWN_ISSUER!r} is the gateway itself)")
            if ext.issuer == self.tokens.issuer:
                problems.append(f"external_issuers.{name}.issuer: equals tokens.issuer")
        for i, route in enumerate(self.routes):
            unknown = [n for n in route.issuers if n != OWN_ISSUER and n not in self.external_issuers]
            if unknown:
                problems.append(f"routes[{i}].issuers: unknown issuers {unknown} (define them in external_issuers)")
            if route.identity_jwt and self.tokens.signing_algorithm == "HS256":
                problems.append(f"routes[{i}].identity_jwt: needs an asymmetric active key in tokens.keys (upstreams verify with the public JWKS)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _endpoint_collisions(config: GatewayConfig) -> list[str]:
    """Two endpoints on one path would shadow each other silently; refuse that."""
    owners: dict[str, str] = {}
    problems = []
    places = [(f"endpoints.{role}", path) for role, path in config.endpoints.model_dump().items()]
    for i, profile in enumerate(config.compat.profiles):
        places += [(f"compat.profiles[{i}].paths.{role}", path) for role, path in profile.named_paths().items()]
    if config.metrics.enabled and config.admin is None:  # /metrics is one of the main listener's endpoints then
        places.append(("metrics.path", config.metrics.path))
    for where, path in places:
        if path in owners:
            problems.append(f"{where}: {path} is already served as {owners[path]}")
        owners.setdefault(path, where)
    return problems


def _cookie_problems(config: GatewayConfig) -> list[str]:
    problems = []
    if not config.cookies.secure and not is_loopback(config.listen.host):
        problems.append("cookies.secure: false is only for testing on http://localhost (listen.host must be a loopback address)")
    if config.cookies.enabled and config.cookies.csrf_secret is None and config.tokens.secret is None:
        problems.append("cookies.csrf_secret: required when tokens use no shared secret (>= 32 bytes)")
    for i, profile in enumerate(config.compat.profiles):
        if profile.cookies and not config.cookies.enabled:
            problems.append(f"compat.profiles[{i}].cookies: needs cookies.enabled: true")
    return problems


def interpolate(node: Any, where: str, problems: list[str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string, so secrets stay in the environment."""
    if isinstance(node, dict):
        return {k: interpolate(v, _join(where, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, f"{where}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                problems.append(f"{where}: environment variable {name} is not set")
                return ""
            return default
        return value

    return _ENV.sub(substitute, node)


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


def _message(error: dict[str, Any]) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key (check its spelling)"
    if error["type"] == "missing":
        return "required"
    return msg


# libyaml's parser when PyYAML was built with it: 3x faster on a 10,000-route file.
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """A safe loader that refuses duplicate keys: YAML parsers keep the last one silently,
    so ``auth: required`` followed by ``auth: none`` would give a public route."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1})", key_node.start_mark
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


_YAML_LOADER = _UniqueKeyLoader


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning I/O and syntax errors into ConfigError."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})"]) from None


def parse_config(raw: Any, base_dir: Path) -> GatewayConfig:
    """Validate a parsed YAML document; relative paths are relative to ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): the file must be a YAML mapping"])
    problems: list[str] = []
    raw = interpolate(raw, "", problems)
    for i, route in enumerate(raw.get("routes") or []):
        if isinstance(route, dict) and not route.get("name"):
            route["name"] = f"routes[{i}]"
    if isinstance(raw.get("users_file"), str):
        raw["users_file"] = str(base_dir / raw["users_file"])
    resolve_source_paths(raw, base_dir)
    _resolve_key_files(raw, base_dir)
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        problems += [f"{_location(e['loc'])}: {_message(e)}" if e["loc"] else _message(e) for e in exc.errors()]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def _resolve_key_files(raw: dict[str, Any], base_dir: Path) -> None:
    """Key files, like the users file, are relative to the configuration file."""
    tokens = raw.get("tokens")
    keys = tokens.get("keys") if isinstance(tokens, dict) else None
    for spec in keys if isinstance(keys, list) else []:
        if not isinstance(spec, dict):
            continue
        for name in ("secret_file", "private_key_file", "public_key_file"):
            if isinstance(spec.get(name), str):
                spec[name] = str(base_dir / spec[name])


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    return parse_config(read_yaml(path), path.resolve().parent)
