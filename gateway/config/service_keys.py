"""Service keys for machines (``service_keys``): where a key is read, and how long a verified key is trusted."""
from __future__ import annotations

from pydantic import Field, field_validator

from gateway.config.types import HEADER_NAME, RESERVED_HEADERS, Duration, Model

__all__ = ["MAX_CACHE_SECONDS", "ServiceKeySettings"]

MAX_CACHE_SECONDS = 300.0  # the revocation bound cannot be made longer than five minutes


class ServiceKeySettings(Model):
    """Long random keys for machines (`gwsk_...`), kept hashed in the credentials database; see docs/service-keys.md."""

    header: str = "X-Api-Key"
    """The request header that carries a key (`Authorization: Bearer gwsk_...` works too); never passed to an upstream."""
    bearer: bool = True
    """Also accept a key as `Authorization: Bearer gwsk_...`."""
    cache: Duration = Field(10.0, ge=0, le=MAX_CACHE_SECONDS)
    """How long a process trusts a key it looked up: a revoked key stops working on every instance within this bound."""
    cache_size: int = Field(10_000, ge=0, le=1_000_000)
    """Keys (and unknown keys) remembered per process, oldest dropped first."""

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not HEADER_NAME.match(value) or len(value) > 64:
            raise ValueError(f"{value!r} is not a header name")
        if value.lower() in RESERVED_HEADERS:
            raise ValueError(f"{value} belongs to the transport or the client's token; use another header (X-Api-Key)")
        if "_" in value or "." in value:
            raise ValueError(f"{value}: use '-' between words (nginx and CGI-style servers drop or fold '_' and '.')")
        return value
