"""Every error the gateway answers: JSON ``{"detail", "code"}``, never a traceback.

401s carry ``WWW-Authenticate`` as RFC 6750 §3 asks: a bare challenge when no
token was presented, ``error="invalid_token"`` with a description when one was.
"""
from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["ErrorCode", "GatewayError", "error_response", "insufficient_user_authentication", "with_fields"]

REALM = "gateway"


class ErrorCode(StrEnum):
    """Every ``code`` the gateway answers with (docs/endpoints.md#errors lists them, a test keeps the two equal)."""

    # the request
    BAD_REQUEST = "bad_request"
    HEADER_NOT_ALLOWED = "header_not_allowed"  # decision mode: a header the front proxy would pass on
    # credentials and policy
    AUTHENTICATION_REQUIRED = "authentication_required"
    INVALID_CREDENTIALS = "invalid_credentials"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_VALID = "token_not_valid"
    TOKEN_REVOKED = "token_revoked"
    TOKEN_REUSED = "token_reused"
    PERMISSION_DENIED = "permission_denied"
    CSRF_FAILED = "csrf_failed"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    CORS_REFUSED = "cors_refused"
    # sign-in through an identity provider (docs/sign-in.md)
    INVALID_NEXT = "invalid_next"
    NEXT_NOT_ALLOWED = "next_not_allowed"
    STATE_INVALID = "state_invalid"
    INVALID_CODE = "invalid_code"
    CODE_REJECTED = "code_rejected"
    ID_TOKEN_INVALID = "id_token_invalid"
    PROVIDER_DENIED = "provider_denied"
    ISSUER_MISMATCH = "issuer_mismatch"
    EMAIL_DOMAIN_NOT_ALLOWED = "email_domain_not_allowed"
    GROUP_NOT_ALLOWED = "group_not_allowed"
    USER_NOT_FOUND = "user_not_found"
    # the admin API (docs/admin.md)
    ADMIN_KEY_REQUIRED = "admin_key_required"
    ADMIN_KEY_INVALID = "admin_key_invalid"
    SESSION_NOT_FOUND = "session_not_found"
    # second factor (docs/second-factor.md)
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    SECOND_FACTOR_INVALID = "second_factor_invalid"
    MFA_TOKEN_INVALID = "mfa_token_invalid"
    FACTOR_REQUIRED = "factor_required"
    INSUFFICIENT_USER_AUTHENTICATION = "insufficient_user_authentication"
    STEP_UP_WRONG_USER = "step_up_wrong_user"
    STEP_UP_INSUFFICIENT = "step_up_insufficient"
    # service keys (docs/service-keys.md)
    SERVICE_KEY_INVALID = "service_key_invalid"
    SERVICE_KEY_EXPIRED = "service_key_expired"
    SERVICE_KEY_REVOKED = "service_key_revoked"
    SERVICE_KEY_NOT_ACCEPTED = "service_key_not_accepted"
    SERVICE_KEY_EXISTS = "service_key_exists"
    SERVICE_KEY_NOT_FOUND = "service_key_not_found"
    # routing
    NOT_FOUND = "not_found"
    NOT_CONFIGURED = "not_configured"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # limits
    BODY_TIMEOUT = "body_timeout"
    BODY_TOO_SLOW = "body_too_slow"
    REQUEST_TIMEOUT = "request_timeout"
    URI_TOO_LONG = "uri_too_long"
    HEADERS_TOO_LARGE = "headers_too_large"
    TOO_MANY_REQUESTS = "too_many_requests"
    TOO_MANY_CLIENT_CONNECTIONS = "too_many_client_connections"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    TOO_MANY_WEBSOCKETS = "too_many_websockets"
    UPSTREAM_BUSY = "upstream_busy"
    RATE_LIMITED = "rate_limited"
    LOGIN_BUSY = "login_busy"
    # the upstream and the gateway's own dependencies
    UPSTREAM_REFUSED = "upstream_refused"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_MISCONFIGURED = "provider_misconfigured"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_TIMEOUT = "provider_timeout"
    STORE_UNAVAILABLE = "store_unavailable"
    ISSUER_UNAVAILABLE = "issuer_unavailable"
    IDENTITY_UNAVAILABLE = "identity_unavailable"
    DRAINING = "draining"
    INTERNAL_ERROR = "internal_error"
    CLIENT_CLOSED = "client_closed"  # 499 in the log and metrics only: nothing is sent


class GatewayError(Exception):
    """An answer to the client: status, machine-readable code, human-readable detail."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        token_presented: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.token_presented = token_presented

    @classmethod
    def unauthorized(cls, code: ErrorCode, detail: str, *, token_presented: bool = True) -> "GatewayError":
        return cls(401, code, detail, token_presented=token_presented)

    @classmethod
    def bad_request(cls, detail: str) -> "GatewayError":
        return cls(400, ErrorCode.BAD_REQUEST, detail)


def _quote(text: str) -> str:
    """A quoted-string safe for a header: no quotes, backslashes or control characters."""
    cleaned = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else " " for c in text)
    return f'"{cleaned}"'


def challenge(error: GatewayError) -> str:
    if error.status == 403:
        return f"Bearer realm={_quote(REALM)}, error=\"insufficient_scope\", error_description={_quote(error.detail)}"
    if error.token_presented:
        return f"Bearer realm={_quote(REALM)}, error=\"invalid_token\", error_description={_quote(error.detail)}"
    return f"Bearer realm={_quote(REALM)}"


def insufficient_user_authentication(detail: str, *, max_age: int | None = None, acr_values: str | None = None) -> GatewayError:
    """401 for a caller whose login is too old or lacks a factor (RFC 9470 §3): log in again, with these."""
    params = [f"realm={_quote(REALM)}", 'error="insufficient_user_authentication"', f"error_description={_quote(detail)}"]
    if acr_values:
        params.append(f"acr_values={_quote(acr_values)}")
    if max_age is not None:
        params.append(f'max_age="{int(max_age)}"')
    return GatewayError(401, ErrorCode.INSUFFICIENT_USER_AUTHENTICATION, detail, headers={"WWW-Authenticate": "Bearer " + ", ".join(params)},
                        token_presented=True)


def error_response(error: GatewayError, body: Mapping[str, object] | None = None) -> web.Response:
    # Imported here, once per process in effect: configuration and `gateway check` use GatewayError without a server.
    from aiohttp import web

    from gateway.context import ERROR_CODE

    headers = dict(error.headers)
    if error.status == 401 or (error.status == 403 and error.code == ErrorCode.PERMISSION_DENIED):
        headers.setdefault("WWW-Authenticate", challenge(error))
    payload = body if body is not None else {"detail": error.detail, "code": error.code}
    response = web.Response(
        status=error.status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers,
    )
    response[ERROR_CODE] = error.code
    return response


def with_fields(response: web.Response, fields: Mapping[str, object]) -> web.Response:
    """A JSON answer (the gateway's or a dialect's error body) with ``fields`` added; any other body left as it is."""
    try:
        body = json.loads(response.body) if isinstance(response.body, bytes) else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        body.update(fields)
        response.body = json.dumps(body).encode()
    return response
