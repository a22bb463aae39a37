"""``routes``: which requests go where, and what each route requires and injects."""
from __future__ import annotations

import functools
from typing import Any, Literal, Mapping

from pydantic import ValidationInfo, field_validator, model_validator

from gateway.config.basic import check_realm
from gateway.config.browser import ErrorStyleName
from gateway.config.limits import RateLimit, WebsocketSession
from gateway.config.networks import NetworkRef, check_route_networks
from gateway.config.tokens import OWN_ISSUER
from gateway.config.types import HEADER_NAME, QUERY_NAME, AbsPath, Duration, Model, base_url, check_header_name
from gateway.net import parse_host


class Requirements(Model):
    """Claims a token must carry for a route: any of the roles, all of the scopes, equal claims."""

    roles_any: tuple[str, ...] = ()
    """The `roles` claim contains at least one of these."""
    scopes_all: tuple[str, ...] = ()
    """`scope` (space-separated) or `scopes` (a list) contains all of these."""
    claims: dict[str, str | int | bool] = {}
    """Claims that must be equal to these values, type included."""
    amr_any: tuple[str, ...] = ()
    """Step-up: the login's `amr` (RFC 8176: `pwd`, `otp`, `hwk`, `swk`, `mfa`) contains at least one of these, else 401 insufficient_user_authentication; not with `acr`."""
    max_auth_age: Duration | None = None
    """Step-up: the login (`auth_time`) is at most this old, else 401 insufficient_user_authentication with `max_age`; a refresh never renews it."""
    acr: str | None = None
    """Step-up: a level of `second_factor.levels` (e.g. `mfa`, `phishing_resistant`): the login's `amr` has one of its values (or a trusted provider asserted it as `acr`), else 401 insufficient_user_authentication with `acr_values` naming it; not with `amr_any`."""

    @model_validator(mode="after")
    def _one_method_list(self) -> "Requirements":
        if self.acr is not None and self.amr_any:
            raise ValueError("give acr (a level of second_factor.levels, whose amr values it stands for) or amr_any, not both")
        return self

    @field_validator("max_auth_age")
    @classmethod
    def _max_auth_age(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError("at least 1s")
        return value

    def auth_deadline(self, claims: Mapping[str, Any]) -> float | None:
        """When ``claims``' login stops meeting ``max_auth_age`` (epoch seconds), or None without one."""
        auth_time = claims.get("auth_time")
        if self.max_auth_age is None:
            return None
        if not isinstance(auth_time, (int, float)) or isinstance(auth_time, bool):
            return 0.0
        return float(auth_time) + self.max_auth_age

    @property
    def steps_up(self) -> bool:
        """Whether the route asks anything of the login (a level, amr values or its age)."""
        return bool(self.amr_any) or self.acr is not None or self.max_auth_age is not None

    def meets_level(self, claims: Mapping[str, Any], levels: Mapping[str, tuple[str, ...]]) -> bool:
        """The login has one of the route's amr values (``amr_any``, or its level's), or the level as ``acr``
        (set only from a trusted provider's assertion); True when the route asks for neither."""
        if self.acr is not None:
            return bool(_as_set(claims.get("amr")) & set(levels.get(self.acr, ()))) or claims.get("acr") == self.acr
        return not self.amr_any or bool(_as_set(claims.get("amr")) & set(self.amr_any))

    def step_up(self, claims: Mapping[str, Any], now: float, levels: Mapping[str, tuple[str, ...]]) -> str | None:
        """Why the caller's login is not strong or recent enough (401 insufficient_user_authentication), or None."""
        if not self.meets_level(claims, levels):
            return "This route needs a login with a second factor"
        deadline = self.auth_deadline(claims)
        if deadline is not None and now >= deadline:
            return "This route needs a more recent login"
        return None

    @property
    def acr_values(self) -> str | None:
        """The 401's ``acr_values``: the level's name, else the ``amr_any`` values."""
        return self.acr or (" ".join(self.amr_any) if self.amr_any else None)

    def refusal(self, claims: Mapping[str, Any]) -> str | None:
        """Why ``claims`` do not meet these requirements (the 403's message), or None when they do."""
        if self.roles_any and not _as_set(claims.get("roles")) & set(self.roles_any):
            return "You do not have a role this route requires"
        if self.scopes_all:
            granted = _as_set(claims.get("scope"), split=True) | _as_set(claims.get("scopes"))
            if not set(self.scopes_all) <= granted:
                return "You do not have every scope this route requires"
        for name, expected in self.claims.items():
            if name not in claims or claims[name] != expected or type(claims[name]) is not type(expected):
                return f"The {name} claim does not allow this route"
        return None


def _as_set(value: Any, *, split: bool = False) -> set[str]:
    if isinstance(value, str):
        return set(value.split()) if split else {value}
    if isinstance(value, (list, tuple)):
        return {str(v) for v in value}
    return set()

class IdentityJwt(Model):
    """A short-lived JWT for the upstream, signed by the gateway's active asymmetric key."""

    header: str = "X-Gateway-Identity"
    """The header that carries it."""
    lifetime: Duration = 60
    """How long the identity JWT is valid, 1s..10m: it is meant for one hop."""
    audience: str | None = None
    """Its `aud`; absent: the route's upstream URL."""

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return check_header_name(value)

    @field_validator("lifetime")
    @classmethod
    def _lifetime(cls, value: float) -> float:
        if not 1 <= value <= 600:
            raise ValueError("must be between 1s and 10m: the token is meant for one hop")
        return value


class WebsocketToken(Model):
    """Where a websocket handshake may carry its token besides ``Authorization``: browsers cannot set headers."""

    query_param: str | None = None
    """A query parameter, e.g. `access_token`; removed from the query the upstream sees."""
    subprotocol_prefix: str | None = None
    """A Sec-WebSocket-Protocol prefix, e.g. `bearer.` for `Sec-WebSocket-Protocol: bearer.<token>`."""

    @field_validator("query_param")
    @classmethod
    def _query_param(cls, value: str | None) -> str | None:
        if value is not None and not QUERY_NAME.match(value):
            raise ValueError("must be a plain query parameter name (letters, digits, . _ ~ -)")
        return value

    @field_validator("subprotocol_prefix")
    @classmethod
    def _subprotocol_prefix(cls, value: str | None) -> str | None:
        if value is not None and not HEADER_NAME.match(value):
            raise ValueError("must be an RFC 7230 token (no spaces, commas or quotes)")
        return value

    @property
    def enabled(self) -> bool:
        return self.query_param is not None or self.subprotocol_prefix is not None


class Route(Model):
    name: str = ""
    """In logs and metrics (empty: `routes[i]`); names must be unique."""
    prefix: AbsPath
    """Matched at a segment boundary: /reports takes /reports and /reports/x, never /reportsx."""
    methods: tuple[str, ...] | None = None
    """The methods the route takes; absent: any method."""
    host: str | None = None
    """Exact, or `*.domain` (subdomains only); case, a trailing dot and the port ignored; absent: any host."""
    networks: tuple[NetworkRef, ...] | None = None
    """Client networks the route takes: CIDR blocks and names from `networks`; requests from elsewhere go on to the next route (absent: every client)."""
    upstream: str
    """Absolute http(s) URL without query or fragment; its path is prepended."""
    strip_prefix: bool = False
    """Remove the prefix: /reports/x reaches an upstream http://h/base as /base/x."""
    auth: Literal["required", "optional", "none", "basic"] = "required"
    """`required`: a valid token or 401; `optional`: a token sent must be valid, none passes without identity; `none`: not checked; `basic`: HTTP Basic user and password, checked against the user sources (legacy clients)."""
    basic_realm: str | None = None
    """The realm of `auth: basic`'s challenge (`WWW-Authenticate: Basic realm="..."`); absent: `gateway`."""
    require: Requirements = Requirements()
    """Claims the token (or the Basic user) must carry, all of them, else 403 permission_denied; only with `auth: required` or `basic`."""
    headers: dict[str, str] = {}
    """Upstream header -> claim; list claims are joined with commas."""
    timeout: Duration = 30.0
    """Connect timeout, and the longest silence while reading the upstream."""
    forward_authorization: bool = False
    """Pass the client's Authorization header upstream."""
    service_keys: bool = False
    """Accept service keys (docs/service-keys.md) as well as tokens; off by default, so a machine credential reaches only routes chosen for it."""
    preserve_host: bool = False
    """Send the client's Host (validated, normalised) instead of the upstream's."""
    issuers: tuple[str, ...] = (OWN_ISSUER,)
    """Whose tokens the route accepts: `gateway` (the gateway's own) and names defined in `external_issuers`."""
    identity_jwt: IdentityJwt | None = None
    """A signed identity header for the upstream; needs an asymmetric active key."""
    websocket: bool = False
    """The route carries websocket upgrades."""
    websocket_token: WebsocketToken = WebsocketToken()
    """Where a handshake may carry its token besides Authorization (both off by default)."""
    websocket_session: WebsocketSession = WebsocketSession()
    """Bounds on one websocket of this route (both off by default)."""
    rate_limit: RateLimit | None = None
    """The route's request rate, e.g. `{requests: 100, per: 1m, key: sub, burst: 20}`; absent: none."""
    login: str | None = None
    """Where a browser navigation without a session is sent: a provider of `oidc.providers` or `signin` (302, `next` = this URL); fetch/XHR get 401 with `login_url`."""
    errors: ErrorStyleName | None = None
    """How this route's errors (401, 403, 429, 502...) are worded: `gateway`, `simplejwt` or `flask-jwt-extended`; absent: `compat.errors`."""

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        upper = tuple(m.upper() for m in value)
        if not upper or any(not HEADER_NAME.match(m) for m in upper):
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

    @field_validator("networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        return check_route_networks(value, info)

    @field_validator("basic_realm")
    @classmethod
    def _basic_realm(cls, value: str | None) -> str | None:
        return None if value is None else check_realm(value)

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        return base_url(value).rstrip("/")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, claim in value.items():
            check_header_name(name)
            if not isinstance(claim, str) or not claim:
                raise ValueError(f"{name}: the value must be a claim name")
        return value

    @model_validator(mode="after")
    def _auth_consistency(self) -> "Route":
        wants = self.require.roles_any or self.require.scopes_all or self.require.claims or self.require.steps_up
        if wants and self.auth not in ("required", "basic"):
            raise ValueError("require: needs auth: required or basic")
        self._basic_consistency()
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
        _ = self.strip_segments  # computed once, at load
        return self

    def _basic_consistency(self) -> None:
        if self.auth != "basic":
            if self.basic_realm is not None:
                raise ValueError("basic_realm: needs auth: basic")
            return
        if self.forward_authorization:
            raise ValueError("forward_authorization: a route with auth: basic would send the password upstream")
        if self.websocket:
            raise ValueError("websocket: a route with auth: basic carries no websocket upgrades")
        if self.login is not None:
            raise ValueError("login: a route with auth: basic asks the client for a password itself (401 with a Basic challenge)")

    @functools.cached_property
    def strip_segments(self) -> int:
        """Path segments removed before the upstream: those of ``prefix`` with ``strip_prefix``, else none."""
        return len([s for s in self.prefix.split("/") if s]) if self.strip_prefix else 0
