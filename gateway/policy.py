"""Policy: whether a caller's verified claims satisfy the route's ``require``.

The rules are the requirements' own (``config.routes.Requirements.refusal``:
any of ``roles_any`` in the ``roles`` claim, all of ``scopes_all`` in
``scope`` (space-separated) or ``scopes`` (a list), each of ``claims`` equal
in value and type); a failure is 403 ``permission_denied`` with its reason.
A caller who has the roles but whose login is too weak or too old for the
route (``amr_any``, ``max_auth_age``) gets 401 ``insufficient_user_authentication``
instead, with the RFC 9470 challenge: logging in again fixes that, not a role.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from gateway.config import Route
from gateway.errors import ErrorCode, GatewayError, insufficient_user_authentication

__all__ = ["check_requirements"]


def check_requirements(route: Route, claims: Mapping[str, Any]) -> None:
    """Raise 403 ``permission_denied`` unless the claims meet the route's ``require``."""
    reason = route.require.refusal(claims)
    if reason is not None:
        raise GatewayError(403, ErrorCode.PERMISSION_DENIED, reason)
    weak = route.require.step_up(claims, time.time())
    if weak is not None:
        max_age = route.require.max_auth_age
        raise insufficient_user_authentication(weak, max_age=None if max_age is None else int(max_age),
                                               acr_values=route.require.acr_values)
