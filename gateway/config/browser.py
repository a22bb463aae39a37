"""Browser-facing sections: ``compat`` (token endpoint dialects), ``cookies`` and ``cors``."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, SecretStr, field_validator, model_validator

from gateway.config.tokens import Tokens
from gateway.config.types import HEADER_NAME, RESERVED_HEADERS, AbsPath, Duration, Model, abs_path

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


class CompatPaths(Model):
    """Absolute paths of a profile's endpoints; a missing one is not served."""

    login: AbsPath | None = None
    refresh: AbsPath | None = None
    verify: AbsPath | None = None
    logout: AbsPath | None = None
    me: AbsPath | None = None


class CompatRequest(Model):
    """Names of the request fields."""

    username: FieldName = "username"
    password: FieldName = "password"
    refresh: FieldName = "refresh"
    token: FieldName = "token"


class CompatResponse(Model):
    """Names of the response fields; ``extras`` adds token_type and expires_in."""

    access: FieldName = "access"
    refresh: FieldName = "refresh"
    extras: bool = True


def _prefix(value: Any) -> str:
    if value in ("", "/", None):
        return ""
    try:
        return abs_path(value)
    except ValueError as exc:
        raise ValueError(f"prefix: {exc}") from None


class CompatProfile(Model):
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


class Compat(Model):
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


class Cookies(Model):
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
        if not HEADER_NAME.match(value) or value.lower() in RESERVED_HEADERS:
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


class Cors(Model):
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
            if item != "*" and not HEADER_NAME.match(item):
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
