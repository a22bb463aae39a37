"""Operational sections: ``listen``, ``store``, ``endpoints``, ``shutdown``, ``metrics``, ``admin``, ``login_throttle``."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.types import AbsPath, Duration, Model
from gateway.redis_url import parse_redis_url


class Listen(Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)

class Store(Model):
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

class Endpoints(Model):
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


class Shutdown(Model):
    """SIGTERM: stop accepting, let in-flight requests finish for up to ``drain_timeout``."""

    drain_timeout: Duration = 30.0
    # /readyz answers 503 for this long before the listener closes, so a load balancer
    # stops sending new connections first (Kubernetes: a little over the probe period).
    readiness_delay: Duration = 0.0


class Metrics(Model):
    enabled: bool = True
    path: AbsPath = "/metrics"
    # Without an admin listener, /metrics on the main listener answers loopback peers only
    # (and not through a proxy: no X-Forwarded-For/Forwarded); public: true serves everyone.
    public: bool = False


class Admin(Model):
    """A second listener for /metrics, /healthz and /readyz, kept off the public port."""

    host: str = "127.0.0.1"
    port: int = Field(9090, ge=0, le=65535)

class LoginThrottle(Model):
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
