"""What every dialect is: a name, a preset for ``compat.profiles[]``, and an error style.

The gateway decides *that* a request fails (one implementation,
``auth/sessions.py``); a style only decides how the failure is worded. Status
codes and ``WWW-Authenticate`` never change. The base style is the gateway's
own shape, ``{"detail", "code"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from gateway.errors import GatewayError, error_response

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["TOKEN_CODES", "Dialect", "ErrorStyle"]

TOKEN_CODES = frozenset({"token_expired", "token_not_valid", "token_revoked", "token_reused"})


class ErrorStyle:
    """The gateway's own shape, ``{"detail", "code"}``; subclasses reword it."""

    name = "gateway"

    def access_error(self, error: GatewayError) -> web.Response:
        """A failure to use an access token: proxied routes and "me" endpoints."""
        return error_response(error)

    def endpoint_error(self, error: GatewayError) -> web.Response:
        """A failure at a token endpoint: login, refresh, verify, logout."""
        return error_response(error)

    def missing_fields(self, names: Iterable[str]) -> web.Response:
        fields = " and ".join(names)
        return error_response(GatewayError.bad_request(f"The {fields} field is required"))


@dataclass(frozen=True)
class Dialect:
    """One dialect: ``preset`` fills every ``compat.profiles[]`` key not given (``prefix`` goes in front of its
    paths, never of paths given explicitly; ``rotate_refresh`` None follows ``tokens.rotate_refresh``)."""

    name: str
    style: ErrorStyle
    preset: dict[str, Any] = field(default_factory=dict)
