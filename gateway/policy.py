"""Policy: whether a caller's verified claims satisfy the route's ``require``.

One rule per kind, each refusing with 403 ``permission_denied`` and a reason:
any of ``roles_any`` in the ``roles`` claim, all of ``scopes_all`` in ``scope``
(space-separated) or ``scopes`` (a list), and each of ``claims`` equal in value
and type.
"""
from __future__ import annotations

from typing import Any, Mapping

from gateway.config import Route
from gateway.errors import GatewayError

__all__ = ["check_requirements"]


def _as_set(value: Any, *, split: bool = False) -> set[str]:
    if isinstance(value, str):
        return set(value.split()) if split else {value}
    if isinstance(value, (list, tuple)):
        return {str(v) for v in value}
    return set()


def check_requirements(route: Route, claims: Mapping[str, Any]) -> None:
    """Raise 403 ``permission_denied`` unless the claims meet the route's ``require``."""
    req = route.require
    if req.roles_any and not _as_set(claims.get("roles")) & set(req.roles_any):
        raise GatewayError(403, "permission_denied", "You do not have a role this route requires")
    if req.scopes_all:
        granted = _as_set(claims.get("scope"), split=True) | _as_set(claims.get("scopes"))
        if not set(req.scopes_all) <= granted:
            raise GatewayError(403, "permission_denied", "You do not have every scope this route requires")
    for name, expected in req.claims.items():
        if name not in claims or claims[name] != expected or type(claims[name]) is not type(expected):
            raise GatewayError(403, "permission_denied", f"The {name} claim does not allow this route")
