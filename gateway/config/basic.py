"""``basic_auth``: the cache of verified HTTP Basic credentials of routes with ``auth: basic``."""
from __future__ import annotations

import re

from pydantic import Field, field_validator

from gateway.config.types import Duration, Model

__all__ = ["BasicAuthSettings", "check_realm"]

_REALM = re.compile(r'^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,128}$')  # printable ASCII without " and \: one quoted-string


def check_realm(value: str) -> str:
    if not _REALM.match(value) or value != value.strip():
        raise ValueError("must be 1-128 printable ASCII characters without quotes or backslashes, no leading or trailing space")
    return value


class BasicAuthSettings(Model):
    """How long a verified user:password pair of an `auth: basic` route is believed without asking the user sources again."""

    cache_lifetime: Duration = 60
    """How long a verified pair is reused, 0..10m (0: every request checks the password, argon2 included); a password changed or a user disabled in the source takes effect within it."""
    cache_size: int = Field(10_000, ge=1, le=1_000_000)
    """Verified pairs held at most per process, oldest first out."""

    @field_validator("cache_lifetime")
    @classmethod
    def _lifetime(cls, value: float) -> float:
        if value > 600:
            raise ValueError("must be at most 10m: a changed password takes effect only when the entry ends")
        return value
