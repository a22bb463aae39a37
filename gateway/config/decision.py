"""``decision``: decision mode, where a front proxy (nginx, Traefik, Caddy, HAProxy, Envoy) proxies and the gateway decides.

Off while the section is absent. Which headers describe the original request
follows from ``front`` alone, never from anything the caller says; only peers
in ``allow_from`` are answered.
"""
from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.types import AbsPath, Duration, Model

__all__ = ["FRONTS", "Decision"]

FRONTS = ("nginx", "traefik", "caddy", "haproxy", "envoy")
LOOPBACK = ("127.0.0.0/8", "::1/128")


class Decision(Model):
    """Decision mode: the front proxy asks, the gateway answers 200 with identity headers or the route's 401/403."""

    front: Literal["nginx", "traefik", "caddy", "haproxy", "envoy"]
    """Which proxy asks, and so where the original request is read: `nginx` X-Original-Method, X-Original-URI and Host; `traefik`, `caddy` and `haproxy` X-Forwarded-Method, -Uri and -Host; `envoy` the method, the path after `path` and Host of the ext_authz request."""
    path: AbsPath = "/auth/decide"
    """Where decisions are answered; with `envoy`, the ext_authz `path_prefix` (the original path follows it)."""
    allow_from: tuple[str, ...] = LOOPBACK
    """Networks (CIDR) of the peers that may ask, compared with the connection's own address, never a forwarded one; others get 404."""
    max_age: Duration = Field(5.0, le=3600)
    """Longest lifetime of an allowed decision in the front proxy's cache (the gateway's own admission cache follows revocations: `limits.admission_cache`); also bounded by `store.revocation_cache` (0 there: never cached), the token's `exp` and half the identity token's lifetime. Routes with a `rate_limit` are never cached."""

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: object) -> object:
        if isinstance(data, dict) and "cache_size" in data:
            raise ValueError("cache_size: moved to limits.admission_cache (one cache of admitted callers for proxy "
                             "and decision mode)")
        return data

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=True)
            except ValueError:
                raise ValueError(f"{network!r} is not a network in CIDR form (host bits zero), e.g. 10.0.0.0/8") from None
        return value
