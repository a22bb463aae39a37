"""Operational sections: ``listen``, ``store``, ``endpoints``, ``shutdown``, ``metrics``, ``admin``, ``login_throttle``."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from gateway.config.types import AbsPath, Duration, Model
from gateway.redis_url import parse_redis_url


class Listen(Model):
    host: str = "127.0.0.1"
    """Address the main listener binds."""
    port: int = Field(8080, ge=0, le=65535)
    """Port of the main listener."""

class StoreSettings(Model):
    backend: Literal["memory", "redis"] = "memory"
    """`memory`: one process only; `redis`: shared by every instance."""
    url: str | None = None
    """Required with `redis`: redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://."""
    prefix: str = "gw:"
    """Key prefix, so several deployments can share one Redis."""
    timeout: Duration = 1.0
    """Per operation; past it the store counts as unavailable."""
    failure_mode: Literal["fail_closed", "fail_open"] = "fail_closed"
    """When a proxied request's revocation check cannot reach the store: `fail_closed` answers 503, `fail_open` serves on the signature check alone (logged)."""
    revocation_cache: Duration = 0.0
    """Redis only: answer revocation checks from a local cache kept current by pub/sub, trusting "not revoked" for at most this long; 0: ask Redis on every request. Restart to change."""

    @model_validator(mode="after")
    def _redis_needs_url(self) -> "StoreSettings":
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

class Endpoints(Model):
    """Paths of the gateway's own endpoints; a trailing slash is accepted on each."""

    token: AbsPath = "/auth/token"
    """Login: credentials in, a token pair out."""
    refresh: AbsPath = "/auth/token/refresh"
    """A refresh token in, new tokens out."""
    verify: AbsPath = "/auth/token/verify"
    """Checks a token."""
    logout: AbsPath = "/auth/logout"
    """Revokes the session."""
    me: AbsPath = "/auth/me"
    """The caller's identity."""
    healthz: AbsPath = "/healthz"
    """Liveness."""
    readyz: AbsPath = "/readyz"
    """Readiness: 503 while draining or saturated."""
    client_js: AbsPath = "/auth/client.js"
    """The browser client script."""
    jwks: AbsPath = "/.well-known/jwks.json"
    """The public keys (JWKS)."""
    openid_configuration: AbsPath = "/.well-known/openid-configuration"
    """The discovery document."""
    oidc: AbsPath = "/auth/oidc"
    """Prefix of the OIDC sign-in endpoints: `<oidc>/<provider>/login`, `/callback`, `/backchannel-logout`, `<oidc>/exchange`, `/logout`, `/providers`."""
    signin: AbsPath = "/auth/signin"
    """The sign-in page: the providers and, in cookie mode, the password form; served only with `oidc.providers` or a route with `login: signin`."""


class Shutdown(Model):
    """SIGTERM: stop accepting, let in-flight requests finish for up to ``drain_timeout``."""

    drain_timeout: Duration = 30.0
    """In-flight requests get this long to finish."""
    readiness_delay: Duration = 0.0
    """/readyz answers 503 this long before the listener closes, so a load balancer stops sending first (Kubernetes: a little over the probe period)."""


class MetricsSettings(Model):
    enabled: bool = True
    """Serve Prometheus metrics."""
    path: AbsPath = "/metrics"
    """Path of the metrics endpoint."""
    public: bool = False
    """Without an admin listener: false answers direct loopback callers only (not through a proxy); true serves everyone."""


ADMIN_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def admin_key_name(value: object) -> str:
    if not isinstance(value, str) or not ADMIN_KEY_NAME.match(value):
        raise ValueError("must be 1-64 letters, digits, . _ @ or -, starting with a letter or digit (e.g. ops-alice) "
                         f"(got {str(value)[:80]!r})")
    return value


def admin_key_digest(value: object) -> str:
    if not isinstance(value, str) or not SHA256_HEX.match(value):
        raise ValueError("must be the key's SHA-256 as 64 lowercase hex digits (`gateway admin-key generate NAME` "
                         f"prints it) (got {str(value)[:80]!r})")
    return value


class AdminKey(Model):
    """One named admin key, stored as its SHA-256 (the key itself is never in the configuration)."""

    name: Annotated[str, BeforeValidator(admin_key_name)]
    """Who holds the key; every admin action is logged with it (audit events `admin.*`)."""
    sha256: Annotated[str, BeforeValidator(admin_key_digest)]
    """SHA-256 of the key, 64 lowercase hex digits, as `gateway admin-key generate NAME` prints it."""


class Admin(Model):
    """A second listener for /metrics, /healthz and /readyz, kept off the public port; with admin keys also the admin API."""

    host: str = "127.0.0.1"
    """Address the admin listener binds."""
    port: int = Field(9090, ge=0, le=65535)
    """Port of the admin listener."""
    keys: tuple[AdminKey, ...] = ()
    """Named admin keys (`{name, sha256}`) that open the admin API under `/admin/api/` on this listener; none (and no `keys_file`): the API is off (docs/admin.md)."""
    keys_file: Path | None = None
    """A file of more admin keys, one `NAME SHA256` per line (`#` comments), read at start and reload; relative to the config file."""

    @model_validator(mode="after")
    def _unique_names(self) -> "Admin":
        names = [key.name for key in self.keys]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ValueError(f"keys: each name once (audit events name the key): {', '.join(doubled)} given twice")
        return self

class LoginThrottleSettings(Model):
    """Failed logins per username and per client IP (a lockout), and the volume of attempts per IP (a short rate limit)."""

    enabled: bool = True
    """Count failed logins and refuse past the limits (429)."""
    per_user: int = Field(10, ge=1)
    """Failed logins per login name per window."""
    per_ip: int = Field(50, ge=1)
    """Failed logins per client address per window (IPv6: per /64)."""
    window: Duration = 15 * 60
    """A fixed window from the first failure, 1s..1d: how long `per_user` and `per_ip` lock out."""
    rate_per_ip: int = Field(60, ge=1)
    """Login attempts, right or wrong, per client address per `rate_window` (IPv6: per /64): password logins, started OIDC sign-ins and passkey-login challenges (`second_factor.path`/passkey/options); past it: 429 with Retry-After, never a lockout."""
    rate_window: Duration = 60.0
    """The fixed window of `rate_per_ip`, 1s..10m, from the address's first attempt in it."""
    concurrent_per_ip: int = Field(4, ge=1)
    """Password checks running at once per address (per process); the rest wait up to 5 s."""
    concurrent_per_user: int = Field(2, ge=1)
    """Password checks running at once per login name; past it: 429 login_busy."""

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        if not 1 <= value <= 86400:
            raise ValueError("must be between 1s and 1d: a longer window locks users out for too long")
        return value

    @field_validator("rate_window")
    @classmethod
    def _rate_window(cls, value: float) -> float:
        if not 1 <= value <= 600:
            raise ValueError("must be between 1s and 10m: a rate limit's answer is a short wait, not a lockout")
        return value

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "attempts_per_ip" in data:
            raise ValueError(
                "attempts_per_ip: removed; it counted successful logins too and locked an address out for `window`. "
                "The volume of attempts is now a short rate limit, `rate_per_ip` attempts per `rate_window` "
                "(429 with Retry-After); only failures (`per_ip`, `per_user`) lock out"
            )
        return data
