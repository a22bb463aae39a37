"""``tokens``: how the gateway signs and checks its own tokens (the short HS256 form, or a key ring)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.types import Duration, Model, one_of

# What an external issuer may sign with: asymmetric only, so a public JWKS can never be an HMAC secret.
EXTERNAL_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
OWN_ISSUER = "gateway"  # the name a route's ``issuers`` uses for the gateway's own tokens
KID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MIN_HS256_SECRET = 32
# Claims the gateway sets on every token it mints; nothing else (users, sources, IdP mappings) may set them.
TOKEN_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "jti", "token_type", "fid"})
# How, when and through which provider the user signed in: set by the gateway at sign-in, kept by every refresh.
LOGIN_CLAIMS = frozenset({"amr", "auth_time", "acr", "idp"})


def check_hs256_secret(secret: bytes) -> None:
    """The one rule for shared secrets (tokens, key ring, CSRF): RFC 7518 §3.2's minimum."""
    if len(secret) < MIN_HS256_SECRET:
        raise ValueError(f"HS256 needs a secret of at least {MIN_HS256_SECRET} bytes (RFC 7518 §3.2)")

class KeySpec(Model):
    """One key of the ring: where its material comes from, and whether it signs new tokens.

    Material is read when the key ring is built (``keys.KeyRing.from_config``),
    so a missing file or variable is a configuration error at start and reload.
    """

    kid: str
    """The key's id in token headers and the JWKS: 1-64 of A-Z a-z 0-9 . _ ~ - (`gateway keys generate` uses the RFC 7638 thumbprint)."""
    algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"]
    """The key's algorithm."""
    active: bool = False
    """This key signs new tokens; exactly one key is active (or name it in `signing_kid`)."""
    secret: SecretStr | None = None
    """HS256: the secret itself, at least 32 bytes (e.g. `${LEGACY_SECRET}`); never published."""
    secret_file: Path | None = None
    """HS256: a file holding the secret, instead of `secret`."""
    private_key_file: Path | None = None
    """PEM file of the private key; a key with a private half can sign."""
    private_key_env: str | None = None
    """Environment variable holding the private PEM, instead of `private_key_file` (newline escapes accepted)."""
    public_key_file: Path | None = None
    """PEM file of the public key; optional beside a private key (must match it); alone, the key only verifies."""
    public_key_env: str | None = None
    """Environment variable holding the public PEM, instead of `public_key_file`."""

    @field_validator("kid")
    @classmethod
    def _kid(cls, value: str) -> str:
        if not KID.match(value):
            raise ValueError("a kid is 1-64 characters of A-Z a-z 0-9 . _ ~ -")
        return value

    @model_validator(mode="after")
    def _material(self) -> "KeySpec":
        secrets = one_of(self, ("secret", "secret_file"))
        private = one_of(self, ("private_key_file", "private_key_env"))
        public = one_of(self, ("public_key_file", "public_key_env"))
        if self.algorithm == "HS256":
            if private or public or not secrets:
                raise ValueError("an HS256 key needs secret or secret_file, and no PEM keys")
            if self.secret is not None:
                check_hs256_secret(self.secret.get_secret_value().encode())
        elif secrets or not (private or public):
            raise ValueError(f"an {self.algorithm} key needs a private or public PEM key (file or env), not a secret")
        return self


class Tokens(Model):
    """How the gateway mints and checks its own tokens.

    Either the short form (``algorithm: HS256`` + ``secret``: one HS256 key) or
    a ``keys`` list with exactly one active signing key.
    """

    algorithm: str = "HS256"
    """The short form's algorithm, HS256 only; list RS256, ES256 or EdDSA keys under `keys`."""
    secret: SecretStr | None = None
    """The short form: the one HS256 key, at least 32 bytes (e.g. `${GATEWAY_SECRET}`), or the file is refused."""
    keys: tuple[KeySpec, ...] = ()
    """A key ring instead of `secret`: exactly one key active; older keys verify until their last token has expired."""
    signing_kid: str | None = None
    """The kid of the signing key, instead of `active: true` on it; use one or the other."""
    jwks_max_age: Duration = 300
    """Cache-Control max-age of the JWKS and discovery documents."""
    issuer: str = "gateway"
    """`iss` of minted tokens, checked on every token."""
    audience: str = "gateway"
    """`aud` of minted tokens, checked on every token."""
    access_lifetime: Duration = 15 * 60
    """How long an access token lives; not longer than `refresh_lifetime`."""
    refresh_lifetime: Duration = 14 * 86400
    """How long a refresh token lives."""
    leeway: Duration = 10
    """Clock skew tolerated on `exp`, `nbf` and `iat`."""
    refresh_grace: Duration = 10
    """A repeat of one refresh within this window gets the same successor pair."""
    rotate_refresh: bool = True
    """A refresh returns a new refresh token and spends the old one."""
    max_sessions_per_user: int = Field(25, ge=1)
    """Live sessions (refresh families) per user; a new login revokes the oldest."""
    password_change_ends_sessions: bool = False
    """File and SQL user sources: a changed stored password hash ends the user's sessions begun before it, at their next refresh (not the gateway's own `rehash_on_login`; docs/admin.md)."""

    @field_validator("algorithm")
    @classmethod
    def _short_form_algorithm(cls, value: str) -> str:
        if value != "HS256":
            raise ValueError("the short form (algorithm + secret) is HS256 only; list RS256/ES256/EdDSA keys under keys:")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_hs256_secret(value.get_secret_value().encode())
        return value

    @model_validator(mode="after")
    def _key_forms(self) -> "Tokens":
        if self.keys:
            if self.secret is not None:
                raise ValueError("give either secret (one HS256 key) or keys, not both")
            kids = [k.kid for k in self.keys]
            duplicates = sorted({k for k in kids if kids.count(k) > 1})
            if duplicates:
                raise ValueError(f"keys: duplicate kids {duplicates}")
            self._signing_spec()
        else:
            if self.secret is None:
                raise ValueError("secret: required (or give a keys list)")
        return self

    def _signing_spec(self) -> KeySpec:
        flagged = [k for k in self.keys if k.active]
        if self.signing_kid is not None:
            if flagged and [k.kid for k in flagged] != [self.signing_kid]:
                raise ValueError("signing_kid and the active flags disagree; use one of them")
            chosen = [k for k in self.keys if k.kid == self.signing_kid]
            if not chosen:
                raise ValueError(f"signing_kid: no key has kid {self.signing_kid!r}")
        else:
            chosen = flagged
            if len(chosen) != 1:
                raise ValueError("keys: exactly one key must be active (active: true, or signing_kid)")
        spec = chosen[0]
        if spec.algorithm != "HS256" and spec.private_key_file is None and spec.private_key_env is None:
            raise ValueError(f"keys: the active key {spec.kid!r} needs its private key")
        return spec

    @property
    def signing_algorithm(self) -> str:
        """The algorithm new tokens are signed with."""
        return self._signing_spec().algorithm if self.keys else "HS256"

    @model_validator(mode="after")
    def _lifetimes(self) -> "Tokens":
        if self.access_lifetime <= 0 or self.refresh_lifetime <= 0:
            raise ValueError("access_lifetime and refresh_lifetime must be positive")
        if self.access_lifetime > self.refresh_lifetime:
            raise ValueError("access_lifetime must not exceed refresh_lifetime")
        return self
