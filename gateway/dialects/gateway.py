"""The gateway's own dialect: ``/auth/token`` and friends, errors as ``{"detail", "code"}``."""

from __future__ import annotations

from gateway.dialects.base import Dialect, ErrorStyle

__all__ = ["DIALECT"]


DIALECT = Dialect(
    "gateway",
    ErrorStyle(),
    {
        "prefix": "",
        "paths": {
            "login": "/auth/token",
            "refresh": "/auth/token/refresh",
            "verify": "/auth/token/verify",
            "logout": "/auth/logout",
            "me": "/auth/me",
        },
        "rotate_refresh": None,
    },
)
