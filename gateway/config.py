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

from .redis_url import parse_redis_url

__all__ = [
    "Compat", "CompatProfile", "ConfigError", "Cookies", "Cors", "GatewayConfig", "Route", "WebsocketToken",
    "load_config", "parse_duration",
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


class Tokens(_Model):
    """How the gateway mints and checks its own tokens."""

    algorithm: Literal["HS256"] = "HS256"
    secret: SecretStr
    issuer: str = "gateway"
    audience: str = "gateway"
    access_lifetime: Duration = 15 * 60
    refresh_lifetime: Duration = 14 * 86400
    leeway: Duration = 10
    refresh_grace: Duration = 10
    rotate_refresh: bool = True

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError("HS256 needs a secret of at least 32 bytes (RFC 7518 §3.2)")
        return value

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


class Shutdown(_Model):
    """SIGTERM: stop accepting, let in-flight requests finish for up to ``drain_timeout``."""

    drain_timeout: Duration = 30.0
    # /readyz answers 503 for this long before the listener closes, so a load balancer
    # stops sending new connections first (Kubernetes: a little over the probe period).
    readiness_delay: Duration = 0.0


class Metrics(_Model):
    enabled: bool = True
    path: AbsPath = "/metrics"


class Admin(_Model):
    """A second listener for /metrics, /healthz and /readyz, kept off the public port."""

    host: str = "127.0.0.1"
    port: int = Field(9090, ge=0, le=65535)


class Requirements(_Model):
    """Claims a token must carry for a route: any of the roles, all of the scopes, equal claims."""

    roles_any: tuple[str, ...] = ()
    scopes_all: tuple[str, ...] = ()
    claims: dict[str, str | int | bool] = {}


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
    websocket: bool = False
    websocket_token: WebsocketToken = WebsocketToken()

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
        return value.lower().split(":")[0] if value else None

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
        if self.websocket_token.enabled and not self.websocket:
            raise ValueError("websocket_token: needs websocket: true")
        if self.websocket_token.enabled and self.auth == "none":
            raise ValueError("websocket_token: a route with auth: none takes no token")
        return self


# -- browser-facing settings: compatibility profiles, cookie mode, CORS ---------------------

ErrorStyleName = Literal["gateway", "simplejwt", "flask-jwt-extended"]
ProfileName = Literal["gateway", "simplejwt", "djoser", "flask-jwt-extended", "custom"]
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_COOKIE_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


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


class GatewayConfig(_Model):
    listen: Listen = Listen()
    tokens: Tokens
    store: Store = Store()
    users_file: Path
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

    @model_validator(mode="after")
    def _browser_settings(self) -> "GatewayConfig":
        problems = _endpoint_collisions(self) + _cookie_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _unique_route_names(self) -> "GatewayConfig":
        names = [r.name for r in self.routes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"routes: duplicate route names {duplicates}")
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
    if not config.cookies.secure and config.listen.host not in _LOOPBACK:
        problems.append("cookies.secure: false is only for testing on http://localhost (listen.host must be a loopback address)")
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


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning I/O and syntax errors into ConfigError."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
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
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        problems += [f"{_location(e['loc'])}: {_message(e)}" if e["loc"] else _message(e) for e in exc.errors()]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    return parse_config(read_yaml(path), path.resolve().parent)
