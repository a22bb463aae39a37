"""From a provider's verified claims to the gateway's session: claim mapping, allow-lists, user sources.

Only the claims listed in ``claims`` reach the session (default-deny), read by
dotted path from the ID token first and userinfo second. An ``email`` counts
only when ``email_verified`` is true (unless ``allow_unverified_email``), so a
provider that lets users type any address cannot pass a domain allow-list.

Subjects: a provider's user is ``<provider>:<sub>`` (like external issuers'
prefix), so ``corp:alice`` is never the local ``alice`` nor another provider's;
with ``require_user_source`` the session is the user source's user
(``user_source_claim`` names the username), exactly as after a password login.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gateway.auth.issuers import claim_at
from gateway.auth.sessions import PROVIDER_SESSION, SESSION_CLAIMS, identity_unavailable
from gateway.config.oidc import OidcProvider
from gateway.errors import ErrorCode, GatewayError
from gateway.sources.base import SourceUnavailable
from gateway.sources.chain import UserChain
from gateway.sources.users import User

__all__ = ["Identity", "map_claims", "missing_claims", "resolve_identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signs in: the session's subject and claims, and what the refresh token must carry."""

    subject: str
    claims: Mapping[str, Any]
    refresh_extra: Mapping[str, Any] | None


def _forbidden(code: ErrorCode, detail: str) -> GatewayError:
    return GatewayError(403, code, detail)


def _verified_email(settings: OidcProvider, sources: list[Mapping[str, Any]]) -> bool:
    for source in sources:
        if "email_verified" in source:
            return source["email_verified"] is True or source["email_verified"] == "true"
    return settings.allow_unverified_email


def map_claims(settings: OidcProvider, id_claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None) -> dict[str, Any]:
    """The configured claims, ID token first then userinfo; an unverified email is dropped."""
    sources = [id_claims] + ([userinfo] if userinfo is not None else [])
    out: dict[str, Any] = {}
    for target, path in settings.claims.items():
        for source in sources:
            value = claim_at(source, path)
            if value is not None:
                out[target] = value
                break
    if "email" in out and not (_verified_email(settings, sources) or settings.allow_unverified_email):
        del out["email"]
    return out


def missing_claims(settings: OidcProvider, id_claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None) -> list[str]:
    """The mapped claims (gateway names) found in neither the ID token nor userinfo: the provider does not release them."""
    sources = [id_claims] + ([userinfo] if userinfo is not None else [])
    return [target for target, path in settings.claims.items() if all(claim_at(s, path) is None for s in sources)]


def _check_allow_lists(settings: OidcProvider, claims: Mapping[str, Any]) -> None:
    if settings.allowed_email_domains:
        email = claims.get("email")
        domain = email.rsplit("@", 1)[1].lower() if isinstance(email, str) and "@" in email else None
        if domain not in settings.allowed_email_domains:
            raise _forbidden(ErrorCode.EMAIL_DOMAIN_NOT_ALLOWED, "Your email address is not in a domain allowed here")
    if settings.allowed_groups:
        groups = claims.get("groups")
        listed = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
        if not set(settings.allowed_groups) & {g for g in listed if isinstance(g, str)}:
            raise _forbidden(ErrorCode.GROUP_NOT_ALLOWED, "You are not in a group allowed here")


async def resolve_identity(
    provider: str, settings: OidcProvider, id_claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None,
    users: UserChain,
) -> Identity:
    """The session a verified sign-in gets, or 403 when an allow-list or the user sources say no."""
    claims = map_claims(settings, id_claims, userinfo)
    _check_allow_lists(settings, claims)
    if not settings.require_user_source:
        session = {**claims, PROVIDER_SESSION: provider}
        return Identity(f"{provider}:{id_claims['sub']}", session, {SESSION_CLAIMS: session, PROVIDER_SESSION: provider})
    path = settings.user_source_claim
    username = claims.get(path) if path in settings.claims else claim_at(id_claims, path)
    if path == "email" and not (_verified_email(settings, [id_claims]) or settings.allow_unverified_email):
        username = None  # an address the provider has not verified names nobody here
    if not isinstance(username, str) or not username:
        raise _forbidden(ErrorCode.USER_NOT_FOUND, "The identity provider did not name a user known here")
    try:
        found = await users.lookup(username)
    except SourceUnavailable:
        raise identity_unavailable() from None
    if not isinstance(found, User):  # unknown, disabled, or in a source that cannot say: refused alike
        raise _forbidden(ErrorCode.USER_NOT_FOUND, "You have no active account here")
    return Identity(found.username, {**found.claims, PROVIDER_SESSION: provider}, None)
