"""djangorestframework-simplejwt: ``/api/token``, no rotation by default, DRF's error bodies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from gateway.dialects.base import TOKEN_CODES, Dialect, ErrorStyle
from gateway.errors import ErrorCode, GatewayError, error_response

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["DIALECT"]


def _simplejwt_message(error: GatewayError) -> str:
    """SimpleJWT (>= 5.3) words: the TokenError raised by its Token classes."""
    if error.code == ErrorCode.TOKEN_EXPIRED:
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
            body = {"detail": "Given token not valid for any token type", "code": ErrorCode.TOKEN_NOT_VALID, "messages": [message]}
            return error_response(error, body)
        if error.code == ErrorCode.AUTHENTICATION_REQUIRED:  # rest_framework.exceptions.NotAuthenticated
            return error_response(error, {"detail": "Authentication credentials were not provided."})
        if error.code == ErrorCode.PERMISSION_DENIED:  # rest_framework.exceptions.PermissionDenied
            return error_response(error, {"detail": "You do not have permission to perform this action."})
        return error_response(error)

    def endpoint_error(self, error: GatewayError) -> web.Response:
        # TokenViewBase.post turns every TokenError into InvalidToken(message)
        if error.code in TOKEN_CODES:
            return error_response(error, {"detail": _simplejwt_message(error), "code": ErrorCode.TOKEN_NOT_VALID})
        if error.code == ErrorCode.INVALID_CREDENTIALS:
            return error_response(error, {"detail": "No active account found with the given credentials"})
        if error.code == ErrorCode.AUTHENTICATION_REQUIRED:
            return error_response(error, {"detail": "Authentication credentials were not provided."})
        return error_response(error, {"detail": error.detail})

    def missing_fields(self, names: Iterable[str]) -> web.Response:
        body = {name: ["This field is required."] for name in names}
        return error_response(GatewayError.bad_request("required fields are missing"), body)


STYLE = SimpleJWTStyle()

DIALECT = Dialect(
    "simplejwt",
    STYLE,
    {
        "prefix": "/api",
        "paths": {"login": "/token", "refresh": "/token/refresh", "verify": "/token/verify", "logout": "/token/blacklist"},
        "response": {"extras": False},
        "rotate_refresh": False,
    },
)
