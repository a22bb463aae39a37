"""The whole file: ``GatewayConfig``, its sections, and the rules that span sections."""
from __future__ import annotations

import functools
import re
from pathlib import Path

from pydantic import ValidationInfo, field_validator, model_validator

from gateway.config.audit import Audit
from gateway.config.basic import BasicAuthSettings
from gateway.config.boundary import EXAMPLE_SECRETS, ClientHeaders, Paths
from gateway.config.browser import Compat, Cookies, Cors
from gateway.config.decision import Decision
from gateway.config.factors import DEFAULT_LEVELS, CredentialStoreSettings, SecondFactor, webauthn_problems
from gateway.config.issuers import ExternalIssuer
from gateway.config.limits import Limits
from gateway.config.networks import NetworkList, NetworkName, unknown_names
from gateway.config.oidc import Oidc
from gateway.config.ops import Admin, Endpoints, Listen, LoginThrottleSettings, MetricsSettings, Shutdown, StoreSettings
from gateway.config.routes import Route
from gateway.config.service_keys import ServiceKeySettings
from gateway.config.sources import SourceSpec
from gateway.config.tokens import NAME, OWN_ISSUER, Tokens
from gateway.config.tracing import Tracing
from gateway.config.types import Model, base_url
from gateway.net import NO_PROXIES, TrustedProxies, is_loopback, parse_network


class GatewayConfig(Model):
    listen: Listen = Listen()
    """The main listener: where clients connect."""
    tokens: Tokens
    """How the gateway signs and checks its own tokens: the short form (one HS256 `secret`) or a `keys` ring."""
    store: StoreSettings = StoreSettings()
    """Where sessions, revocations and counters live: in memory (one process) or in Redis (shared)."""
    users_file: Path | None = None
    """The users file (see below); the same as `users: [{file: ...}]`. Required unless `users` lists sources."""
    users: tuple[SourceSpec, ...] | None = None
    """Identity sources asked in order, instead of `users_file`; each entry is exactly one of file, sql, ldap, http."""
    endpoints: Endpoints = Endpoints()
    """Paths of the gateway's own endpoints; all must differ, and a trailing slash is accepted on each."""
    identity_header_prefixes: tuple[str, ...] = ("X-User-", "X-Auth-")
    """Client headers with these prefixes never reach an upstream (case and `_`/`-` folded)."""
    trust_forwarded_headers: bool = False
    """Believe every peer's X-Forwarded-* and Forwarded headers (one hop): true only when every peer is a proxy you control; prefer `trusted_proxies`."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or CIDR blocks of your load balancers and proxies: only they may report the client's address, scheme and host (X-Forwarded-*, Forwarded), and they are exempt from the per-address connection cap; narrows `trust_forwarded_headers`."""
    networks: dict[NetworkName, NetworkList] = {}
    """Named client networks for `routes[].networks`: name -> CIDR blocks, e.g. `office: [192.0.2.0/24, 2001:db8:1::/48]`."""
    routes: tuple[Route, ...] = ()
    """Ordered; the first match wins. Without any, every request but the gateway's own endpoints is 404."""
    shutdown: Shutdown = Shutdown()
    """SIGTERM and SIGINT: stop accepting, then let in-flight requests finish."""
    metrics: MetricsSettings = MetricsSettings()
    """Prometheus metrics."""
    admin: Admin | None = None
    """A second listener for /metrics, /healthz and /readyz; absent: /metrics is served on the main listener."""
    compat: Compat = Compat()
    """Token endpoints in other dialects; a bare list of profiles is accepted too."""
    cookies: Cookies = Cookies()
    """Cookie mode: tokens in HttpOnly cookies, CSRF by a signed double-submit token."""
    cors: Cors = Cors()
    """Cross-origin access; off while `allow_origins` is empty."""
    external_issuers: dict[str, ExternalIssuer] = {}
    """Identity providers whose tokens routes may accept, by the name routes use in `issuers` (`gateway` is reserved)."""
    login_throttle: LoginThrottleSettings = LoginThrottleSettings()
    """Failed-login throttling, counted in the store."""
    basic_auth: BasicAuthSettings = BasicAuthSettings()
    """The cache of verified credentials of `auth: basic` routes (their failures count in `login_throttle`)."""
    public_url: str | None = None
    """The gateway's external base URL, for the discovery document; absent: the document is served to loopback hosts only."""
    client_headers: ClientHeaders = ClientHeaders()
    """Which client headers reach upstreams."""
    paths: Paths = Paths()
    """How request paths are read before routing."""
    server_header: str = "gateway"
    """The Server header of the gateway's own answers (never versions); restart to change."""
    development: bool = False
    """Allows the docs' example secrets on a non-loopback listener; never in production."""
    limits: Limits = Limits()
    """Connection, request-head, body and upstream-pool bounds of one process; read at start, restart to change."""
    oidc: Oidc = Oidc()
    """Sign-in through OpenID Providers (authorization code + PKCE), turned into the gateway's own session."""
    decision: Decision | None = None
    """Decision mode: a front proxy (nginx, Traefik, Caddy, HAProxy, Envoy) asks, per request, what proxy mode would do; off while absent."""
    tracing: Tracing = Tracing()
    """OpenTelemetry traces of every request, exported over OTLP/HTTP; off by default."""
    audit: Audit = Audit()
    """Audit events (docs/audit.md): logins, refusals of presented credentials, logouts, reloads; read at start, restart to change."""
    credentials: CredentialStoreSettings | None = None
    """The durable credentials store (second factors): a database shared by every instance, secrets sealed at rest."""
    second_factor: SecondFactor | None = None
    """Second factors at the gateway's login (TOTP, recovery codes); off while absent; needs `credentials`."""
    service_keys: ServiceKeySettings | None = None
    """Service keys for machines, accepted on routes with `service_keys: true`; off while absent; needs `credentials`."""

    @field_validator("service_keys")
    @classmethod
    def _service_keys_store(cls, value: ServiceKeySettings | None, info: ValidationInfo) -> ServiceKeySettings | None:
        if value is not None and "credentials" in info.data and info.data["credentials"] is None:  # line of service_keys
            raise ValueError("needs a credentials store (credentials: {url: sqlite:////var/lib/gateway/credentials.db, keys: [...]})")
        return value

    @model_validator(mode="after")
    def _service_keys(self) -> "GatewayConfig":
        unchecked = [f"routes[{i}]" for i, r in enumerate(self.routes) if r.service_keys and r.auth == "none"]
        if unchecked:
            raise ValueError(f"{', '.join(unchecked)}.service_keys: true on auth: none checks no key; use auth: required")
        if self.service_keys is None:
            opted = [f"routes[{i}]" for i, r in enumerate(self.routes) if r.service_keys]
            if opted:
                raise ValueError(f"{', '.join(opted)}.service_keys: true needs the service_keys section (service_keys: {{}})")
        return self

    @model_validator(mode="after")
    def _second_factor_store(self) -> "GatewayConfig":
        if self.second_factor is not None and self.credentials is None:
            raise ValueError("second_factor: needs a credentials store (credentials: {url: sqlite:////var/lib/gateway/credentials.db, keys: [...]})")
        return self

    @property
    def levels(self) -> dict[str, tuple[str, ...]]:
        """The acr levels routes may ask for: ``second_factor.levels``, or their default without that section."""
        return self.second_factor.levels if self.second_factor is not None else DEFAULT_LEVELS

    @model_validator(mode="after")
    def _known_levels(self) -> "GatewayConfig":
        known = ", ".join(self.levels)
        problems = [f"routes[{i}].require.acr: {route.require.acr!r} is not a level of second_factor.levels ({known})"
                    for i, route in enumerate(self.routes)
                    if route.require.acr is not None and route.require.acr not in self.levels]
        problems += [f"oidc.providers.{name}.acr_values: {level!r} is not a level of second_factor.levels ({known})"
                     for name, provider in self.oidc.providers.items() for level in provider.acr_values
                     if level not in self.levels]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                parse_network(entry)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or CIDR block without host bits (10.0.0.0/8, 2001:db8::/32)") from None
        return value

    @functools.cached_property
    def proxies(self) -> TrustedProxies:
        """Whose forwarding headers count: ``trusted_proxies`` when set, else every peer or none."""
        if self.trusted_proxies:
            return TrustedProxies(networks=tuple(parse_network(p) for p in self.trusted_proxies))
        return TrustedProxies(every_peer=True) if self.trust_forwarded_headers else NO_PROXIES

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

    @model_validator(mode="after")
    def _browser_settings(self) -> "GatewayConfig":
        problems = _endpoint_collisions(self) + _cookie_problems(self) + _oidc_problems(self)
        problems += webauthn_problems(self.public_url, self.second_factor)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return base_url(value).rstrip("/")

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
    def _network_names(self) -> "GatewayConfig":
        """Every name a route uses is defined (``loading.parse_config`` reports it at the route's line already)."""
        problems = [f"routes[{i}].networks: {problem}" for i, route in enumerate(self.routes)
                    for problem in unknown_names(route.networks or (), self.networks)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _trust(self) -> "GatewayConfig":
        """Issuer names resolve, never collide with the gateway's own, and signed identity has a key."""
        problems = []
        for name, ext in self.external_issuers.items():
            if name == OWN_ISSUER or not NAME.match(name):
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
    for name in config.oidc.providers:
        places += [(f"oidc.providers.{name}", path) for path in oidc_paths(config.endpoints.oidc, name)]
    if config.oidc.enabled:
        places += [(f"endpoints.oidc ({what})", f"{config.endpoints.oidc}/{what}") for what in OIDC_SHARED]
    if config.metrics.enabled and config.admin is None:  # /metrics is one of the main listener's endpoints then
        places.append(("metrics.path", config.metrics.path))
    if config.decision is not None:
        places.append(("decision.path", config.decision.path))
    if config.second_factor is not None:
        base = config.second_factor.path
        places += [("second_factor.path", path) for path in (base, f"{base}/totp", f"{base}/totp/confirm", f"{base}/recovery-codes")]
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


OIDC_SHARED = ("exchange", "logout", "providers", "step-up")  # <endpoints.oidc>/<what>, one of each
OIDC_PER_PROVIDER = ("login", "callback", "backchannel-logout")  # <endpoints.oidc>/<provider>/<what>


def oidc_paths(prefix: str, provider: str) -> list[str]:
    """The endpoint paths of one provider; the one place they are spelled."""
    return [f"{prefix}/{provider}/{what}" for what in OIDC_PER_PROVIDER]


def oidc_state_key(config: GatewayConfig) -> bytes | None:
    """The key of the sign-in binding cookie: ``oidc.state_secret``, else the CSRF key material, else None."""
    secret = config.oidc.state_secret or config.cookies.csrf_secret or config.tokens.secret
    return None if secret is None else secret.get_secret_value().encode()


def _oidc_problems(config: GatewayConfig) -> list[str]:
    problems = []
    providers = config.oidc.providers
    if providers and config.public_url is None:
        problems.append("public_url: required with oidc.providers (the redirect URI is public_url + the callback path)")
    if providers and oidc_state_key(config) is None:
        problems.append("oidc.state_secret: required when tokens use no shared secret (>= 32 bytes)")
    if "signin" in providers:
        problems.append("oidc.providers.signin: the name is reserved for the sign-in page (routes[].login: signin)")
    for i, route in enumerate(config.routes):
        if route.login is not None and route.login != "signin" and route.login not in providers:
            problems.append(f"routes[{i}].login: {route.login!r} is neither signin nor a provider in oidc.providers")
        if route.login is not None and route.auth == "none":
            problems.append(f"routes[{i}].login: a route with auth: none never asks anyone to sign in")
    return problems
