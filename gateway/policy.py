"""Policy: whether a caller's verified claims satisfy the route's ``require``.

The rules are the requirements' own (``config.routes.Requirements.refusal``:
any of ``roles_any`` in the ``roles`` claim, all of ``scopes_all`` in
``scope`` (space-separated) or ``scopes`` (a list), each of ``claims`` equal
in value and type); a failure is 403 ``permission_denied`` with its reason.
A caller who has the roles but whose login is too weak or too old for the
route (``acr``, ``amr_any``, ``max_auth_age``) gets 401 ``insufficient_user_authentication``
instead, with the RFC 9470 challenge: logging in again fixes that, not a role.
The refusal (``StepUpRequired``) says what the step-up must bring and whose
provider signed the caller in, for ``endpoints.step_up.step_up_answer``.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from gateway.config import Route
from gateway.errors import ErrorCode, GatewayError, insufficient_user_authentication

__all__ = ["StepUpRequired", "check_requirements"]


class StepUpRequired(GatewayError):
    """401 insufficient_user_authentication, with what a step-up must bring."""

    def __init__(self, base: GatewayError, *, max_age: int | None, level: str | None, level_unmet: bool,
                 provider: str | None) -> None:
        super().__init__(base.status, base.code, base.detail, headers=base.headers, token_presented=base.token_presented)
        self.max_age = max_age  # the route's max_auth_age (seconds), or None
        self.level = level  # the route's acr level, or None
        self.level_unmet = level_unmet  # the login lacks the route's level (or amr values), not only its recency
        self.provider = provider  # the OIDC provider that signed the caller in (the ``idp`` claim), or None


def check_requirements(route: Route, claims: Mapping[str, Any], levels: Mapping[str, tuple[str, ...]]) -> None:
    """Raise 403 ``permission_denied`` unless the claims meet the route's ``require``; 401 ``StepUpRequired`` unless
    the login meets its level (``levels``: name -> amr values) and age."""
    require = route.require
    reason = require.refusal(claims)
    if reason is not None:
        raise GatewayError(403, ErrorCode.PERMISSION_DENIED, reason)
    weak = require.step_up(claims, time.time(), levels)
    if weak is not None:
        max_age = None if require.max_auth_age is None else int(require.max_auth_age)
        provider = claims.get("idp")
        raise StepUpRequired(insufficient_user_authentication(weak, max_age=max_age, acr_values=require.acr_values),
                             max_age=max_age, level=require.acr, level_unmet=not require.meets_level(claims, levels),
                             provider=provider if isinstance(provider, str) else None)
