"""Browser-facing sections: ``compat`` (token endpoint dialects), ``cookies`` and ``cors``."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, SecretStr, field_validator, model_validator

from gateway.config.tokens import TOKEN_CLAIMS, Tokens, check_hs256_secret
from gateway.config.types import HEADER_NAME, AbsPath, Duration, Model, abs_path, check_header_name
from gateway.dialects import DIALECTS, STYLE_NAMES

# -- browser-facing settings: compatibility profiles, cookie mode, CORS ---------------------

ErrorStyleName = Literal[STYLE_NAMES]  # type: ignore[valid-type]  # the dialects' registry decides
ProfileName = Literal[tuple(DIALECTS)]  # type: ignore[valid-type]
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_COOKIE_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


def _field_name(value: Any) -> str:
    if not isinstance(value, str) or not _FIELD.match(value):
        raise ValueError(f"{value!r} is not a JSON field name")
    return value


FieldName = Annotated[str, BeforeValidator(_field_name)]



class CompatPaths(Model):
    """Absolute paths of a profile's endpoints; a missing one is not served."""

    login: AbsPath | None = None
    """Login: credentials in, a token pair out."""
    refresh: AbsPath | None = None
    """A refresh token in, new tokens out."""
    verify: AbsPath | None = None
    """Checks a token."""
    logout: AbsPath | None = None
    """Revokes the session."""
    me: AbsPath | None = None
    """The caller's identity, shaped by `me_fields`."""


class CompatRequest(Model):
    """Names of the request fields."""

    username: FieldName = "username"
    """The login name's field."""
    password: FieldName = "password"
    """The password's field."""
    refresh: FieldName = "refresh"
    """The refresh token's field."""
    token: FieldName = "token"
    """The verify endpoint's field."""


class CompatResponse(Model):
    """Names of the response fields; ``extras`` adds token_type and expires_in."""

    access: FieldName = "access"
    """The access token's field."""
    refresh: FieldName = "refresh"
    """The refresh token's field."""
    extras: bool = True
    """Also `token_type` and `expires_in` (the named profiles' presets turn this off)."""


def _prefix(value: Any) -> str:
    if value in ("", "/", None):
        return ""
    try:
        return abs_path(value)
    except ValueError as exc:
        raise ValueError(f"prefix: {exc}") from None


class CompatProfile(Model):
    """One dialect of the token endpoints, with the named profile's presets already filled in."""

    profile: ProfileName  # type: ignore[valid-type]
    """The dialect whose presets fill in every key not given; `custom` has none."""
    prefix: str = ""
    """Put in front of the preset paths (the simplejwt preset: `/api`), never in front of paths given under `paths`."""
    paths: CompatPaths = CompatPaths()
    """The profile's endpoints; each key given overrides the preset, an absent one is not served."""
    request: CompatRequest = CompatRequest()
    """Request field names."""
    response: CompatResponse = CompatResponse()
    """Response field names."""
    login_claim: FieldName = "username"
    """Which claim identifies the user at login: `username` (the users-file key) or e.g. `email`."""
    refresh_from: Literal["body", "bearer"] = "body"
    """`body`, or `bearer`: the refresh token as the bearer (flask-jwt-extended style)."""
    errors: ErrorStyleName = "gateway"
    """How this profile's own endpoints word errors."""
    rotate_refresh: bool | None = None
    """Rotate on this profile's refresh; absent: the preset (the gateway profile follows `tokens.rotate_refresh`, the others do not)."""
    me_fields: dict[str, str] | None = None
    """Shape of GET me: field -> claim, `a|b` the first claim present; absent: all claims."""
    cookies: bool = False
    """This profile answers in cookie mode too (needs `cookies.enabled`)."""
    user_id_claim: FieldName = "user_id"
    """The claim that carries the identity source's `user_id` in access tokens this profile issues (SimpleJWT's `USER_ID_CLAIM`)."""
    user_id_type: Literal["source", "string", "int"] = "source"
    """That claim's JSON type: `source` (as the source gives it), `string` (SimpleJWT 5.5: `"1"`) or `int`."""

    @model_validator(mode="before")
    @classmethod
    def _fill_preset(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or raw.get("profile") not in DIALECTS:
            return raw
        preset = {**DIALECTS[raw["profile"]].preset, "errors": DIALECTS[raw["profile"]].style.name}
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
        if self.user_id_claim in TOKEN_CLAIMS | {"sub"}:
            raise ValueError(f"user_id_claim: {self.user_id_claim} is set by the gateway on every token")
        return self

    def named_paths(self) -> dict[str, str]:
        """The served endpoints by role (login, refresh, ...), without the absent ones."""
        return {role: path for role, path in self.paths.model_dump().items() if path is not None}


class Compat(Model):
    """Compatibility profiles, and how errors of proxied routes look (the deployment's main dialect)."""

    errors: ErrorStyleName = "gateway"
    """The shape of proxied routes' errors (the deployment's main dialect)."""
    profiles: tuple[CompatProfile, ...] = ()
    """Token endpoint dialects; every path of every profile and endpoint must differ."""

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
    """Cookie mode: the gateway's own endpoints answer with cookies instead of tokens in the body."""
    secure: bool = True
    """False only when `listen.host` is a loopback address (testing on http://localhost)."""
    same_site: Literal["Strict", "Lax", "None"] = "Strict"
    """The SameSite attribute; `None` needs `secure`."""
    domain: str | None = None
    """e.g. example.com to share the CSRF cookie with app.example.com; absent: host-only cookies."""
    access_cookie: bool = True
    """The access token in a cookie too (client.js cookie mode needs it)."""
    access_name: CookieName = "gw_access"
    """The access token's cookie: HttpOnly, Path=`access_path`."""
    refresh_name: CookieName = "gw_refresh"
    """The refresh token's cookie: HttpOnly, Path=`refresh_path`."""
    csrf_name: CookieName = "gw_csrf"
    """The CSRF cookie, readable by scripts, Path=/; the three names must differ."""
    csrf_header: str = "X-CSRF-Token"
    """The header that carries the CSRF token back."""
    access_path: AbsPath = "/"
    """Path of the access cookie."""
    refresh_path: AbsPath | None = None
    """Path of the refresh cookie; absent: the refresh endpoint's own path, so the browser sends it nowhere else."""
    csrf_secret: SecretStr | None = None
    """Keys the CSRF tokens, at least 32 bytes; absent: `tokens.secret`, so required with a key ring."""

    @field_validator("csrf_secret")
    @classmethod
    def _csrf_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_hs256_secret(value.get_secret_value().encode())
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
        return check_header_name(value)

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
    """Exact origins, `https://*.domain`, or `*`."""
    allow_methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    """Methods allowed cross-origin."""
    allow_headers: tuple[str, ...] = ("Authorization", "Content-Type", "X-CSRF-Token", "X-Request-Id")
    """Request headers allowed cross-origin; `*` echoes what is asked."""
    allow_credentials: bool = False
    """True for cookie mode across origins; never together with `*`."""
    expose_headers: tuple[str, ...] = ("X-Request-Id",)
    """Response headers scripts may read."""
    max_age: Duration = 600
    """How long a browser may cache a preflight answer."""

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
