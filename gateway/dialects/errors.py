"""How errors look to a client written for another backend.

A frontend written for SimpleJWT checks ``code == "token_not_valid"``; one
written for a flask-jwt-extended backend checks ``err == "Token has expired"``
and the status text ``UNAUTHORIZED``. The gateway decides *that* a request
fails (one implementation, gateway/auth.py); a style only decides how the
failure is worded. Status codes and ``WWW-Authenticate`` never change.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Iterable, Mapping

from aiohttp import web

from gateway.errors import GatewayError, error_response

__all__ = ["ErrorStyle", "FlaskStyle", "GatewayStyle", "SimpleJWTStyle", "error_style"]

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


GatewayStyle = ErrorStyle


def _simplejwt_message(error: GatewayError) -> str:
    """SimpleJWT (>= 5.3) words: the TokenError raised by its Token classes."""
    if error.code == "token_expired":
        return "Token is expired"
    if error.code in {"token_revoked", "token_reused"}:
        return "Token is blacklisted"
    if error.detail.startswith("Token has wrong type"):
        return "Token has wrong type"
    return "Token is invalid"


class SimpleJWTStyle(ErrorStyle):
    """Django REST framework + SimpleJWT (and djoser, which uses SimpleJWT's views)."""

    name = "simplejwt"

    def access_error(self, error: GatewayError) -> web.Response:
        # rest_framework_simplejwt.authentication.JWTAuthentication.get_validated_token
        if error.code in TOKEN_CODES:
            message = {"token_class": "AccessToken", "token_type": "access", "message": _simplejwt_message(error)}
            body = {"detail": "Given token not valid for any token type", "code": "token_not_valid", "messages": [message]}
            return error_response(error, body)
        if error.code == "authentication_required":  # rest_framework.exceptions.NotAuthenticated
            return error_response(error, {"detail": "Authentication credentials were not provided."})
        if error.code == "permission_denied":  # rest_framework.exceptions.PermissionDenied
            return error_response(error, {"detail": "You do not have permission to perform this action."})
        return error_response(error)

    def endpoint_error(self, error: GatewayError) -> web.Response:
        # TokenViewBase.post turns every TokenError into InvalidToken(message)
        if error.code in TOKEN_CODES:
            return error_response(error, {"detail": _simplejwt_message(error), "code": "token_not_valid"})
        if error.code == "invalid_credentials":
            return error_response(error, {"detail": "No active account found with the given credentials"})
        if error.code == "authentication_required":
            return error_response(error, {"detail": "Authentication credentials were not provided."})
        return error_response(error, {"detail": error.detail})

    def missing_fields(self, names: Iterable[str]) -> web.Response:
        body = {name: ["This field is required."] for name in names}
        return error_response(GatewayError.bad_request("required fields are missing"), body)


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


_STYLES: dict[str, ErrorStyle] = {s.name: s for s in (ErrorStyle(), SimpleJWTStyle(), FlaskStyle())}


def error_style(name: str) -> ErrorStyle:
    return _STYLES[name]
