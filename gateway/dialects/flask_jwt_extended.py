"""flask-jwt-extended: ``access_token``/``refresh_token``, refresh by bearer, ``{"msg"}``/``{"err"}`` errors."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Iterable, Mapping

from gateway.dialects.base import Dialect, ErrorStyle
from gateway.errors import GatewayError, error_response

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["DIALECT"]

_FLASK_MESSAGES: Mapping[str, str] = {
    "token_expired": "Token has expired",
    "authentication_required": "Missing Authorization Header",
    "token_revoked": "Token has been revoked",
    "token_reused": "Token has been revoked",
    "invalid_credentials": "Bad username or password",
}


class FlaskStyle(ErrorStyle):
    """A Flask backend with flask-jwt-extended: ``{"msg"}`` (its default) and ``{"err"}`` (the seed's
    custom loaders), and werkzeug's upper-case status text (``401 UNAUTHORIZED``)."""

    name = "flask-jwt-extended"

    def _render(self, error: GatewayError, message: str | None = None) -> web.Response:
        message = message or _FLASK_MESSAGES.get(error.code, error.detail)
        response = error_response(error, {"msg": message, "err": message})
        response.set_status(error.status, HTTPStatus(error.status).phrase.upper())
        return response

    def access_error(self, error: GatewayError) -> web.Response:
        return self._render(error)

    def endpoint_error(self, error: GatewayError) -> web.Response:
        return self._render(error)

    def missing_fields(self, names: Iterable[str]) -> web.Response:
        message = "Missing " + " and ".join(names)
        return self._render(GatewayError.bad_request(message), message)


STYLE = FlaskStyle()

DIALECT = Dialect(
    "flask-jwt-extended",
    STYLE,
    {
        "prefix": "",
        "paths": {"login": "/auth/jwt/create", "refresh": "/auth/jwt/refresh"},
        "request": {"username": "email"},
        "login_claim": "email",
        "refresh_from": "bearer",
        "response": {"access": "access_token", "refresh": "refresh_token", "extras": False},
        "rotate_refresh": False,
    },
)
