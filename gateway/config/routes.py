"""``routes``: which requests go where, and what each route requires and injects."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator
from yarl import URL

from gateway.config.limits import RateLimit, WebsocketSession
from gateway.config.tokens import OWN_ISSUER
from gateway.config.types import HEADER_NAME, QUERY_NAME, RESERVED_HEADERS, AbsPath, Duration, Model, check_header_name
from gateway.net import parse_host


class Requirements(Model):
    """Claims a token must carry for a route: any of the roles, all of the scopes, equal claims."""

    roles_any: tuple[str, ...] = ()
    scopes_all: tuple[str, ...] = ()
    claims: dict[str, str | int | bool] = {}

class IdentityJwt(Model):
    """A short-lived JWT for the upstream, signed by the gateway's active asymmetric key."""

    header: str = "X-Gateway-Identity"
    lifetime: Duration = 60
    audience: str | None = None  # default: the route's upstream URL

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

    query_param: str | None = None  # e.g. access_token; removed from the query the upstream sees
    subprotocol_prefix: str | None = None  # e.g. "bearer." for Sec-WebSocket-Protocol: bearer.<token>

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
            if not HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
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
