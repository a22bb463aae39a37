"""What an admin endpoint is written against: the call (request, the admin key's name, the gateway), the endpoint's
declaration, JSON in and out, and the audit event every action emits."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from gateway.auth.sessions import is_text
from gateway.errors import GatewayError
from gateway.observe.audit import emit
from gateway.runtime import Gateway, Runtime

__all__ = ["MAX_BODY", "AdminCall", "AdminEndpoint", "AdminHandler", "json_answer"]

MAX_BODY = 16 * 1024  # an admin request's JSON body, at most


def json_answer(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One authenticated admin request."""

    request: web.Request
    key: str  # the name of the admin key that made the call
    gateway: Gateway

    @property
    def runtime(self) -> Runtime:
        return self.gateway.runtime

    def audit(self, event: str, **fields: Any) -> None:
        """An audit event of this call (``admin.<area>.<verb>``): the admin key's name and the caller's address added."""
        emit(event, self.request, admin_key=self.key, **fields)

    async def json_body(self, *fields: str) -> dict[str, Any]:
        """The request's JSON object with no field but ``fields``; 400 for anything else (not JSON, not an object,
        too large, an unknown field)."""
        if self.request.content_length is not None and self.request.content_length > MAX_BODY:
            raise GatewayError.bad_request(f"The body is larger than {MAX_BODY} bytes")
        raw = await self.request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise GatewayError.bad_request(f"The body is larger than {MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise GatewayError.bad_request("The body must be a JSON object") from None
        if not isinstance(body, dict):
            raise GatewayError.bad_request("The body must be a JSON object")
        unknown = sorted(set(body) - set(fields))
        if unknown:
            raise GatewayError.bad_request(f"unknown field(s) {', '.join(unknown)}: expected {', '.join(fields)}")
        return body

    def text_field(self, body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
        """A string field of a JSON body: 400 when required and absent, or present and not a non-empty string."""
        value = body.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value or len(value) > 256 or not is_text(value):
            raise GatewayError.bad_request(f"{name}: expected a non-empty string (at most 256 characters)")
        return value


AdminHandler = Callable[[AdminCall], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class AdminEndpoint:
    """``method`` ``<prefix>path`` is answered by ``handler`` (``path`` without slashes at either end)."""

    method: str
    path: str
    handler: AdminHandler
