"""Admin endpoints for second factors: what a user has enrolled, and an operator's reset.

A reset removes every second-factor credential of the user (TOTP, recovery codes) from the credentials
database and ends the user's sessions (family revocation, as ``sessions/revoke``), so a factor an attacker
may have enrolled stops at once and the user enrols again at the next login where policy requires one.
It also ends the user's enrolment grace period (``second_factor.grace_period``) and never starts a new one:
whoever knows the password (a thief, the reason for many resets) must not log in with it alone again.
With ``"grace": true`` the operator grants a new window instead: the next login without a factor starts it.
Both answer 404 ``not_configured`` when the gateway has no ``second_factor`` section.
"""
from __future__ import annotations

from typing import Any

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
    grace = await gate.credentials.grace.get(user)
    period = gate.settings.grace_period
    listed: dict[str, Any] = {"user": user, "methods": methods}
    if grace is not None:
        listed["grace"] = {"started_at": grace.started_at, "deadline": grace.deadline(period), "ended_at": grace.ended_at,
                           "open": grace.open_at(gate.credentials.grace.clock(), period)}
    return json_answer(listed)


async def reset(call: AdminCall) -> web.StreamResponse:
    """``POST mfa/reset`` with ``{user}`` (and ``grace``): every credential removed, every session of the user ended,
    the enrolment grace ended (or, with ``grace: true``, forgotten: the next login starts a new one)."""
    gate = _gate(call)
    body = await call.json_body("user", "grace")
    user = call.text_field(body, "user")
    assert user is not None
    new_grace = body.get("grace", False)
    if not isinstance(new_grace, bool):
        raise GatewayError.bad_request("grace: true (a new enrolment grace period) or false (the default: none)")
    removed = await gate.credentials.methods(user)
    await gate.credentials.remove_all(user)
    records = gate.credentials.grace
    if new_grace:
        await records.forget(user)
    elif await records.close(user):
        emit("second_factor.grace_ended", call.request, subject=user, reason="reset")
    auth = call.runtime.auth
    ended = await revoke_sessions(auth.store, await auth.store.user_sessions(user), auth.family_ttl)
    for family in ended:
        auth.events.revoked("admin")
        emit("session.revoked", call.request, subject=user, reason="second_factor_reset", session=family,
             admin_key=call.key)
    call.audit("admin.mfa.reset", user=user, removed=removed, sessions=len(ended), grace="new" if new_grace else "none")
    return json_answer({"user": user, "removed": removed, "revoked": ended, "grace": "new" if new_grace else "none"})


ENDPOINTS = (
    AdminEndpoint("GET", "mfa", list_factors),
    AdminEndpoint("POST", "mfa/reset", reset),
)
