"""Admin endpoints for sessions: list a user's sessions, revoke one, all of a user's, or all of a provider's user.

Revocation is the family revocation logout uses (``revoke_family``), so it reaches every instance within the
revocation cache's bound (``store.revocation_cache``) and ends the admission cache's entries like a logout.
"""
from __future__ import annotations

from aiohttp import web

from gateway.admin.base import AdminCall, AdminEndpoint, json_answer
from gateway.auth.session_info import live_sessions, revoke_sessions
from gateway.errors import ErrorCode, GatewayError
from gateway.observe.audit import emit

__all__ = ["ENDPOINTS"]


async def list_sessions(call: AdminCall) -> web.StreamResponse:
    """``GET sessions?user=U``: the user's live sessions, oldest first."""
    user = call.request.query.get("user", "")
    if not user or len(user) > 256:
        raise GatewayError.bad_request("user: give the user's name (the token's sub) as ?user=")
    sessions = await live_sessions(call.runtime.auth.store, user)
    call.audit("admin.sessions.listed", user=user, count=len(sessions))
    return json_answer({"user": user, "sessions": [s.as_dict() for s in sessions]})


async def revoke(call: AdminCall) -> web.StreamResponse:
    """``POST sessions/revoke`` with ``{user, session?}`` (the gateway's user) or ``{provider, user}`` (the provider's
    subject): the sessions ended, as ``{"revoked": [ids]}``."""
    body = await call.json_body("user", "session", "provider")
    user = call.text_field(body, "user")
    assert user is not None
    session = call.text_field(body, "session", required=False)
    provider = call.text_field(body, "provider", required=False)
    auth = call.runtime.auth
    if provider is not None:
        flow = call.runtime.oidc
        if flow is None or provider not in flow.clients:
            raise GatewayError.bad_request(f"provider: {provider!r} is not a configured provider (oidc.providers)")
        if session is not None:
            raise GatewayError.bad_request("session: give either a session (with user) or a provider, not both")
        families = await flow.provider_user_sessions(provider, user, auth)
    else:
        families = await auth.store.user_sessions(user)
        if session is not None:
            if session not in families:  # another user's session named under this user is refused, not ended
                raise GatewayError(404, ErrorCode.SESSION_NOT_FOUND, f"{user!r} has no session {session!r}")
            families = [session]
    ended = await revoke_sessions(auth.store, families, auth.family_ttl)
    if session is not None and not ended:
        raise GatewayError(404, ErrorCode.SESSION_NOT_FOUND, f"The session {session!r} of {user!r} has already ended")
    for family in ended:
        auth.events.revoked("admin")
        emit("session.revoked", call.request, subject=user, reason="admin", session=family, provider=provider,
             admin_key=call.key)
    call.audit("admin.sessions.revoked", user=user, provider=provider, session=session, count=len(ended))
    return json_answer({"user": user, "provider": provider, "revoked": ended})


ENDPOINTS = (
    AdminEndpoint("GET", "sessions", list_sessions),
    AdminEndpoint("POST", "sessions/revoke", revoke),
)
