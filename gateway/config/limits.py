"""The ``limits`` section: how much any one client, and all clients together, may hold.

Every limit has a default meant for production; docs/limits.md explains
each key and what a client sees when it hits one. Imported by ``config``.
"""
from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config.types import Duration, Model

__all__ = ["Limits", "RateLimit", "WebsocketSession"]




class Limits(Model):
    """Connection, request-head, body and upstream-pool bounds of one gateway process."""

    # connections
    max_connections: int = Field(10_000, ge=1)
    """Open client connections per process; over it: 503 too_many_connections."""
    max_connections_per_client: int = Field(256, ge=1)
    """Per client address (IPv6: per /64); over it: 429 too_many_client_connections."""
    max_websockets: int = Field(5_000, ge=0)
    """Open websockets per process; over it: 503 too_many_websockets at the handshake."""
    # requests
    max_requests_per_client: int = Field(128, ge=1)
    """Requests in progress per client address (IPv6: per /64); over it: 429 too_many_requests."""
    head_timeout: Duration = 10.0
    """A request head must arrive within this of its first byte (of opening, for a new connection)."""
    keepalive_timeout: Duration = 75.0
    """An idle keep-alive connection is closed after this."""
    body_idle_timeout: Duration = 15.0
    """Longest silence while reading a request body; then 408 body_timeout."""
    body_min_rate: int = Field(500, ge=0)
    """Bytes per second a proxied request body must average once `body_rate_grace` has passed (Apache's mod_reqtimeout: 500); slower: 408 body_too_slow; 0: no minimum."""
    body_rate_grace: Duration = 20.0
    """How long a request body may take before `body_min_rate` applies (a body of N bytes has at least max(grace, N / rate))."""
    max_head_size: int = Field(32 * 1024, ge=1024, le=1024 * 1024)
    """Bytes of request line and headers (nginx: 4 x 8 KiB); over it: 431 headers_too_large."""
    max_header_count: int = Field(100, ge=8, le=1000)
    """Header lines; over it: 431 headers_too_large."""
    max_header_line: int = Field(8190, ge=256, le=65536)
    """Bytes of one header line; over it: 431 (414 uri_too_long for the request target)."""
    admission_cache: int = Field(10_000, ge=0, le=1_000_000)
    """Entries of the cache of admitted callers per (credential, route), for proxy and decision mode: a hit skips the token's verification, revocation check and the route's requirements, never a revocation (gateway/auth/admission_cache.py). On with the memory store and with `store.revocation_cache`; 0 turns it off. Read at start."""
    # the upstream pool
    upstream_connections: int = Field(256, ge=1)
    """Connections to one upstream origin (scheme, host, port)."""
    upstream_queue_timeout: Duration = 5.0
    """Wait for a free upstream connection; then 503 upstream_busy with Retry-After: 1."""
    upstream_client_share: float = Field(0.25, gt=0, le=1)
    """Fraction of one origin's `upstream_connections` that one client address (IPv6: per /64) may hold (at least 1); past it its requests wait like a full pool."""
    upstream_reserved: float = Field(0.25, ge=0, lt=1)
    """Fraction of one origin's `upstream_connections` kept for requests with a verified token: anonymous requests (`auth: none`, `optional` without a token) never take them."""

    @model_validator(mode="after")
    def _positive(self) -> "Limits":
        for name in ("head_timeout", "keepalive_timeout", "body_idle_timeout", "body_rate_grace", "upstream_queue_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.max_connections_per_client > self.max_connections:
            raise ValueError("max_connections_per_client: cannot exceed max_connections")
        if self.max_header_line > self.max_head_size:
            raise ValueError("max_header_line: cannot exceed max_head_size")
        return self


class WebsocketSession(Model):
    """Per-route bounds on one websocket; None leaves that bound off (the token still ends it)."""

    max_lifetime: Duration | None = None
    """Close the socket this long after it opened (close code 4002); absent: no bound."""
    idle_timeout: Duration | None = None
    """Close it after this long without a message either way (4003); absent: no bound."""

    @model_validator(mode="after")
    def _positive(self) -> "WebsocketSession":
        for name in ("max_lifetime", "idle_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: must be positive")
        return self


class RateLimit(Model):
    """A route's request rate: ``requests`` per ``per``, bursts up to ``burst``, counted per ``key``.

    ``key``: ``sub`` (the token's subject; the client address without one), ``ip``,
    ``header:NAME`` or ``claim:NAME`` (the client address when absent).
    """

    requests: int = Field(ge=1)
    """This many requests ..."""
    per: Duration
    """... per this long, steadily (100 per 1m: one every 0.6 s)."""
    key: str = "sub"
    """What is counted: `sub`, `ip`, `header:NAME` or `claim:NAME` (the client address when absent)."""
    burst: int | None = Field(None, ge=1)
    """At most this many at once; absent: `requests`."""

    @model_validator(mode="after")
    def _valid(self) -> "RateLimit":
        if self.per <= 0:
            raise ValueError("per: must be positive")
        kind, _, name = self.key.partition(":")
        if not ((kind in ("sub", "ip") and not name) or (kind in ("header", "claim") and name)):
            raise ValueError("key: sub, ip, header:NAME or claim:NAME")
        return self

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.requests
