"""Admin endpoints for second factors: what a user has enrolled, and an operator's reset.

A reset removes every second-factor credential of the user (TOTP, recovery codes) from the credentials
database and ends the user's sessions (family revocation, as ``sessions/revoke``), so a factor an attacker
may have enrolled stops at once and the user enrols again at the next login where policy requires one.
Both answer 404 ``not_configured`` when the gateway has no ``second_factor`` section.
"""
from __future__ import annotations

from aiohttp import web

from gateway.admin.base import AdminCall, AdminEndpoint, json_answer
from gateway.auth.session_info import revoke_sessions
from gateway.errors import ErrorCode, GatewayError
from gateway.factors.flow import FactorGate
from gateway.observe.audit import emit

__all__ = ["ENDPOINTS"]


def _gate(call: AdminCall) -> FactorGate:
    gate = call.runtime.factors
    if gate is None:
        raise GatewayError(404, ErrorCode.NOT_CONFIGURED, "Second factors are not configured (second_factor)")
    return gate


async def list_factors(call: AdminCall) -> web.StreamResponse:
    """``GET mfa?user=U``: the user's confirmed second factors (``totp``, ``recovery``)."""
    gate = _gate(call)
    user = call.request.query.get("user", "")
    if not user or len(user) > 256:
        raise GatewayError.bad_request("user: give the user's name (the token's sub) as ?user=")
    methods = await gate.credentials.methods(user)
    call.audit("admin.mfa.listed", user=user, methods=methods)
    return json_answer({"user": user, "methods": methods})


async def reset(call: AdminCall) -> web.StreamResponse:
    """``POST mfa/reset`` with ``{user}``: every credential removed and every session of the user ended."""
    gate = _gate(call)
    body = await call.json_body("user")
    user = call.text_field(body, "user")
    assert user is not None
    removed = await gate.credentials.methods(user)
    await gate.credentials.remove_all(user)
    auth = call.runtime.auth
    ended = await revoke_sessions(auth.store, await auth.store.user_sessions(user), auth.family_ttl)
    for family in ended:
        auth.events.revoked("admin")
        emit("session.revoked", call.request, subject=user, reason="second_factor_reset", session=family,
             admin_key=call.key)
    call.audit("admin.mfa.reset", user=user, removed=removed, sessions=len(ended))
    return json_answer({"user": user, "removed": removed, "revoked": ended})


ENDPOINTS = (
    AdminEndpoint("GET", "mfa", list_factors),
    AdminEndpoint("POST", "mfa/reset", reset),
)
