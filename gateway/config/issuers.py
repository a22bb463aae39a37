"""``external_issuers``: identity providers whose bearer tokens routes may accept."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator
from yarl import URL

from gateway.config.tokens import EXTERNAL_ALGORITHMS, TOKEN_CLAIMS
from gateway.config.types import Duration, Model


def _absolute_url(value: str, allow_http: bool) -> None:
    url = URL(value)
    if url.scheme not in {"http", "https"} or not url.host or url.fragment:
        raise ValueError("jwks_url: not an absolute http(s) URL")
    loopback = url.host in {"localhost", "127.0.0.1", "::1"} or url.host.startswith("127.")
    if url.scheme == "http" and not (allow_http or loopback):
        raise ValueError("jwks_url: must be https (or set allow_http: true for a trusted network)")


class ExternalIssuer(Model):
    """An identity provider whose bearer tokens routes may accept (``routes[].issuers``)."""

    issuer: str
    """Must equal the token's `iss` exactly; not `tokens.issuer`."""
    audience: str | tuple[str, ...]
    """One audience or a list; the token's `aud` must contain one."""
    jwks_url: str
    """Where the provider publishes its public keys; https unless loopback or `allow_http`."""
    algorithms: tuple[Literal[EXTERNAL_ALGORITHMS], ...] = ("RS256",)  # type: ignore[valid-type]
    """Allow-list of signature algorithms, asymmetric only."""
    claims: dict[str, str] = {}
    """Claim name routes use -> claim or dotted path in the provider's token, e.g. `{roles: realm_access.roles}`."""
    leeway: Duration = 30
    """Clock skew tolerated on `exp`, `nbf` and `iat`."""
    max_token_lifetime: Duration = 86400
    """Refuse tokens whose exp - iat (or exp - now) is longer."""
    jwks_default_ttl: Duration = 300
    """Cache time when the JWKS answer has no max-age."""
    jwks_min_ttl: Duration = 30
    """A JWKS max-age is clamped into [jwks_min_ttl, jwks_max_ttl]."""
    jwks_max_ttl: Duration = 86400
    """The upper bound of that clamp."""
    kid_refetch_interval: Duration = 30
    """An unknown kid re-fetches the JWKS at most this often."""
    fetch_timeout: Duration = 5
    """Timeout of one JWKS fetch."""
    allow_http: bool = False
    """Allow an http:// `jwks_url` beyond loopback (a trusted network only)."""
    subject_prefix: str | None = None
    """Put before the token's `sub` so its users never pass for local ones or another issuer's (idp:alice); absent: the issuer's name and a colon; `""`: none."""

    @field_validator("subject_prefix")
    @classmethod
    def _subject_prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9._~:@/-]{0,64}$", value):
            raise ValueError("up to 64 characters of A-Z a-z 0-9 . _ ~ : @ / -")
        return value

    def prefix_for(self, name: str) -> str:
        """The subject prefix of this issuer, configured under ``external_issuers.<name>``."""
        return f"{name}:" if self.subject_prefix is None else self.subject_prefix

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, str]) -> dict[str, str]:
        for target, source in value.items():
            if target in TOKEN_CLAIMS:
                raise ValueError(f"{target!r} is set from the verified token and cannot be mapped")
            if not isinstance(source, str) or not source:
                raise ValueError(f"{target}: the value must be a claim name or dotted path")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ExternalIssuer":
        _absolute_url(self.jwks_url, self.allow_http)
        if not self.algorithms:
            raise ValueError("algorithms: list at least one")
        if not self.audience:
            raise ValueError("audience: required")
        if self.kid_refetch_interval <= 0 or self.fetch_timeout <= 0:
            raise ValueError("kid_refetch_interval and fetch_timeout must be positive")
        if not 0 < self.jwks_min_ttl <= self.jwks_default_ttl <= self.jwks_max_ttl:
            raise ValueError("need 0 < jwks_min_ttl <= jwks_default_ttl <= jwks_max_ttl")
        return self
