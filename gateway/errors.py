"""Every error the gateway answers: JSON ``{"detail", "code"}``, never a traceback.

401s carry ``WWW-Authenticate`` as RFC 6750 §3 asks: a bare challenge when no
token was presented, ``error="invalid_token"`` with a description when one was.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["GatewayError", "error_response"]

REALM = "gateway"


class GatewayError(Exception):
    """An answer to the client: status, machine-readable code, human-readable detail."""

    def __init__(
        self,
        status: int,
        code: str,
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
    def unauthorized(cls, code: str, detail: str, *, token_presented: bool = True) -> "GatewayError":
        return cls(401, code, detail, token_presented=token_presented)

    @classmethod
    def bad_request(cls, detail: str) -> "GatewayError":
        return cls(400, "bad_request", detail)


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


def error_response(error: GatewayError, body: Mapping[str, object] | None = None) -> web.Response:
    # Imported here, once per process in effect: configuration and `gateway check` use GatewayError without a server.
    from aiohttp import web

    from gateway.context import ERROR_CODE

    headers = dict(error.headers)
    if error.status == 401 or (error.status == 403 and error.code == "permission_denied"):
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
