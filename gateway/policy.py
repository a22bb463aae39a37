"""Policy: whether a caller's verified claims satisfy the route's ``require``.

The rules are the requirements' own (``config.routes.Requirements.refusal``:
any of ``roles_any`` in the ``roles`` claim, all of ``scopes_all`` in
``scope`` (space-separated) or ``scopes`` (a list), each of ``claims`` equal
in value and type); a failure is 403 ``permission_denied`` with its reason.
"""
from __future__ import annotations

from typing import Any, Mapping

from gateway.config import Route
from gateway.errors import ErrorCode, GatewayError

__all__ = ["check_requirements"]


def check_requirements(route: Route, claims: Mapping[str, Any]) -> None:
    """Raise 403 ``permission_denied`` unless the claims meet the route's ``require``."""
    reason = route.require.refusal(claims)
    if reason is not None:
        raise GatewayError(403, ErrorCode.PERMISSION_DENIED, reason)
