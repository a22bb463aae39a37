"""The durable credentials store (``credentials``) and the second-factor policy (``second_factor``)."""
from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator, model_validator

from gateway.config.types import Duration, Model

KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MIN_SEALING_SECRET = 32
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")


class SealingKey(Model):
    """One key of the ring that encrypts second-factor secrets at rest (AES-256-GCM)."""

    id: str
    """The key's name, stored beside each ciphertext (letters, digits, `_`, `-`; at most 32)."""
    secret: SecretStr
    """At least 32 bytes (e.g. `${GATEWAY_CREDENTIALS_KEY}`); the AES key is derived from it with HKDF-SHA256."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not KEY_ID.match(value):
            raise ValueError(f"{value!r} is not a key id (1-32 of letters, digits, _ and -)")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_SEALING_SECRET:
            raise ValueError(f"at least {MIN_SEALING_SECRET} bytes (python3 -c 'import secrets; print(secrets.token_urlsafe(48))')")
        return value


class CredentialStoreSettings(Model):
    url: str
    """The database: `sqlite:////var/lib/gateway/credentials.db` (a file, the embedded default), `postgresql://user:pw@host/db` or `mysql://user:pw@host/db` (MariaDB, MySQL); the gateway creates and migrates its tables on start."""
    keys: tuple[SealingKey, ...]
    """The sealing key ring, newest first: the first key encrypts, every key decrypts; add a new key at the top to rotate."""
    pool_size: int = 4
    """Connections to PostgreSQL or MariaDB per process."""
    timeout: Duration = 5.0
    """Per statement; past it the store counts as unavailable (503)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme = value.partition("://")[0].split("+")[0]
        if "://" not in value or scheme not in DATABASE_SCHEMES:
            raise ValueError(f"{value.partition('://')[0]!r} is not a database URL: expected sqlite:///path, postgresql:// or mysql://")
        if scheme == "sqlite" and not value.startswith("sqlite:///"):
            raise ValueError("sqlite URLs are sqlite:///relative/path or sqlite:////absolute/path")
        return value

    @model_validator(mode="after")
    def _ring(self) -> "CredentialStoreSettings":
        if not self.keys:
            raise ValueError("keys: at least one sealing key")
        ids = [k.id for k in self.keys]
        if len(ids) != len(set(ids)):
            raise ValueError(f"keys: duplicate key ids {sorted({i for i in ids if ids.count(i) > 1})}")
        if not 1 <= self.pool_size <= 64:
            raise ValueError("pool_size: between 1 and 64")
        if self.timeout <= 0:
            raise ValueError("timeout: must be positive")
        return self


class FactorThrottle(Model):
    """Failed second-factor attempts, counted in the store (every instance), per user and per address."""

    per_user: int = 5
    """Failed codes of one user per `window`; past it every code is refused (429) until the window ends."""
    per_ip: int = 20
    """Failed codes from one address (or /64) per `window`; refused passkey-login answers count here too (a passkey login names no user before it verifies)."""
    window: Duration = 900
    """The fixed window of both counters."""


# RFC 8176 §2: the registered authentication method reference values; a level names some of them, and a trusted
# provider's `amr` is filtered to them.
AMR_VALUES = frozenset({"face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pwd", "rba", "retina",
                        "sc", "sms", "swk", "tel", "user", "vbm", "wia"})
LEVEL_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")  # an acr value: no space (acr_values is space-separated), no quote
DEFAULT_LEVELS: dict[str, tuple[str, ...]] = {"mfa": ("mfa", "otp", "hwk", "swk"), "phishing_resistant": ("hwk", "swk")}


def check_levels(value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Level names usable as acr values, each level a non-empty set of RFC 8176 `amr` values."""
    for name, methods in value.items():
        if not LEVEL_NAME.match(name):
            raise ValueError(f"{name!r} is not a level name (1-64 of letters, digits, and _ . : / -)")
        if not methods:
            raise ValueError(f"{name}: list the amr values that meet it, e.g. [otp, hwk, swk]")
        unknown = sorted(set(methods) - AMR_VALUES)
        if unknown:
            raise ValueError(f"{name}: {unknown} are not RFC 8176 amr values ({', '.join(sorted(AMR_VALUES))})")
    return value


AAGUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class WebAuthnSettings(Model):
    """WebAuthn authenticators and passkeys; the RP ID and origin come from `public_url` (required then, not an IP address)."""

    user_verification: Literal["required", "preferred"] = "required"
    """`required`: an assertion or registration without user verification (PIN, biometrics) is refused."""
    attestation: Literal["none", "direct"] = "none"
    """`none`: the authenticator's make is not asked for; `direct` asks for its attestation (needed for `aaguids`)."""
    aaguids: tuple[str, ...] = ()
    """If set, only authenticators of these models (AAGUIDs, lowercase with dashes) may be registered."""
    passkey_login: bool = False
    """A passkey (discoverable credential, user verified) signs in without a password and stands for both factors."""
    challenge_lifetime: Duration = 120
    """How long a registration or sign-in challenge may be answered (single use)."""
    rp_name: str = "Gateway"
    """The name browsers show for the site when a credential is created."""

    @field_validator("aaguids")
    @classmethod
    def _aaguids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not AAGUID.match(item):
                raise ValueError(f"{item!r} is not an AAGUID (lowercase 8-4-4-4-12 hex)")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> "WebAuthnSettings":
        if not 30 <= self.challenge_lifetime <= 600:
            raise ValueError("challenge_lifetime: between 30s and 10m")
        if self.passkey_login and self.user_verification != "required":
            raise ValueError("passkey_login: needs user_verification: required (a passkey stands for both factors)")
        return self


def webauthn_problems(public_url: str | None, settings: "SecondFactor | None") -> list[str]:
    """WebAuthn's relying party is public_url's host: required, and never an IP address."""
    if settings is None or settings.webauthn is None:
        return []
    if public_url is None:
        return ["public_url: required with second_factor.webauthn (its host is the WebAuthn RP ID, its origin the only origin)"]
    host = urlsplit(public_url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return []
    return [f"public_url: {public_url!r} has an IP address as its host; WebAuthn needs a domain name as RP ID (e.g. localhost)"]


class SecondFactor(Model):
    required: Literal["everyone", "step_up"] = "step_up"
    """`everyone`: every password login needs a second factor; `step_up`: only users who enrolled one, those of `roles`/`groups`, and routes that ask (`require.amr_any`)."""
    roles: tuple[str, ...] = ()
    """Users with any of these roles (the `roles` claim) need a second factor at login."""
    groups: tuple[str, ...] = ()
    """Users in any of these groups (the `groups` claim) need a second factor at login."""
    path: str = "/auth/mfa"
    """Prefix of the enrolment endpoints (`<path>`, `<path>/totp`, `<path>/totp/confirm`, `<path>/recovery-codes`), the step-up page (`<path>/step-up`) and, in cookie mode, the page to manage factors (`<path>/manage`)."""
    issuer_name: str = "Gateway"
    """The name authenticator apps show beside the account."""
    mfa_token_lifetime: Duration = 300
    """How long the `mfa_token` of a proven password may be exchanged for tokens with a code (single use)."""
    grace_period: Duration = 0
    """A user whom `required`, `roles` or `groups` requires to have a factor but who has none may log in with the password alone (`amr: [pwd]`) until this long after the first such login, remembered in the credentials database; then the login asks to enrol. `0`: no grace."""
    enrol_max_auth_age: Duration = 300
    """Adding or removing a factor or new recovery codes with an access token needs a login at most this old."""
    totp_window: int = 1
    """Time steps (30 s) accepted either side of now, for clocks that drift; each step's code is accepted once."""
    recovery_codes: int = 10
    """How many recovery codes one set has."""
    throttle: FactorThrottle = FactorThrottle()
    """Failed-code throttling."""
    webauthn: WebAuthnSettings | None = None
    """WebAuthn authenticators and passkeys as a factor (absent: off)."""
    levels: dict[str, tuple[str, ...]] = DEFAULT_LEVELS
    """Named levels for `routes[].require.acr`: name -> the `amr` values (RFC 8176) of which a login needs one, e.g. `{mfa: [mfa, otp, hwk, swk], phishing_resistant: [hwk, swk]}` (the default; a list given replaces it whole; also used without this section); the name is the 401's `acr_values` and what a provider is asked for."""

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return check_levels(value)

    @property
    def manage_page(self) -> str:
        """The page where a browser user (cookie mode) lists, adds and removes factors: `<path>/manage`."""
        return f"{self.path}/manage"

    @model_validator(mode="after")
    def _bounds(self) -> "SecondFactor":
        if not self.path.startswith("/") or self.path.endswith("/") or len(self.path) < 2:
            raise ValueError("path: an absolute path without a trailing slash, e.g. /auth/mfa")
        if not 0 <= self.totp_window <= 2:
            raise ValueError("totp_window: 0, 1 or 2 steps")
        if not 30 <= self.mfa_token_lifetime <= 900:
            raise ValueError("mfa_token_lifetime: between 30s and 15m")
        if not 0 <= self.grace_period <= 90 * 86400:
            raise ValueError("grace_period: between 0 (no grace) and 90 days")
        if not 4 <= self.recovery_codes <= 20:
            raise ValueError("recovery_codes: between 4 and 20")
        if self.throttle.per_user < 1 or self.throttle.per_ip < 1 or self.throttle.window <= 0:
            raise ValueError("throttle: per_user, per_ip and window must be positive")
        return self
