"""djoser's JWT endpoints (``/auth/jwt/create``) and ``users/me``; SimpleJWT's views and errors underneath."""

from __future__ import annotations

from gateway.dialects import simplejwt
from gateway.dialects.base import Dialect

__all__ = ["DIALECT"]


DIALECT = Dialect(
    "djoser",
    simplejwt.STYLE,
    {
        "prefix": "",
        "paths": {
            "login": "/auth/jwt/create",
            "refresh": "/auth/jwt/refresh",
            "verify": "/auth/jwt/verify",
            "me": "/auth/users/me",
        },
        "response": {"extras": False},
        "rotate_refresh": False,
        "me_fields": {"email": "email", "id": "user_id|id|sub", "username": "sub"},
    },
)
