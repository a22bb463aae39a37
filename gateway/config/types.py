"""What every section is made of: durations, paths, header names, the frozen model, and ConfigError.

Each check is written once here and used by every section.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from yarl import URL

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
QUERY_NAME = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
# Headers a route may never set itself: they belong to the transport or to the client.
RESERVED_HEADERS = frozenset(
    "host authorization content-length transfer-encoding connection keep-alive upgrade te "
    "trailer proxy-authorization proxy-authenticate cookie set-cookie x-forwarded-for "
    "x-forwarded-proto x-forwarded-host x-request-id".split()
)


class ConfigError(Exception):
    """A configuration that must not start; ``problems`` lists every location at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``15m``, ``14d``, ``250ms`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("not a duration (write e.g. 30s, 15m, 14d)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (write e.g. 30s, 15m, 14d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Model(BaseModel):
    """Frozen, unknown keys refused.

    The string literal under each field describes the key: ``gateway.config.reference``
    reads it into docs/configuration.md (not ``use_attribute_docstrings``, which would
    parse the source at every import).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

def one_of(spec: BaseModel, fields: tuple[str, ...]) -> int:
    given = [f for f in fields if getattr(spec, f) is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(given)}")
    return len(given)

def abs_path(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "//" in value:
        raise ValueError("must be an absolute path like /auth/token")
    if any(seg in {".", ".."} for seg in value.split("/")):
        raise ValueError("must not contain . or .. segments")
    return value.rstrip("/") or "/"


AbsPath = Annotated[str, BeforeValidator(abs_path)]


def base_url(value: str) -> str:
    """An absolute http(s) URL without query or fragment (an upstream, an issuer, the public URL); returned as given."""
    if isinstance(value, str) and "://" not in value:
        raise ValueError(f"not an absolute URL: add the scheme, e.g. http://{value}")
    url = URL(value)
    if url.scheme not in {"http", "https"} or not url.host or url.query_string or url.fragment:
        raise ValueError("not an absolute http(s) URL without query or fragment")
    return value


def check_header_name(name: str) -> str:
    if not HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
        raise ValueError(f"{name!r} is not a header the gateway may inject")
    return name
