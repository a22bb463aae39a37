"""``gateway check`` warnings about second factors: requirements that stop the logins of frontends which cannot answer them.

The frontends of the compatibility profiles were written for backends without a
second step: they do not know ``second_factor_required`` or
``insufficient_user_authentication``, and several treat any 401 as "refresh and
retry" (docs/frontends.md). A requirement that covers their users stops those
users' logins or loops their refreshes; the check says so, per profile and per route.
It also names routes whose level the users of their ``login:`` provider can never
meet: a provider that is not trusted gives no ``amr``, and without ``second_factor``
there is no factor at the gateway either.
"""
from __future__ import annotations

from gateway.config import GatewayConfig

__all__ = ["provider_level_warnings", "second_factor_warnings"]


def _who(config: GatewayConfig) -> str:
    settings = config.second_factor
    assert settings is not None
    if settings.required == "everyone":
        return f"every user needs a second factor at login{_grace(config)}"
    listed = []
    if settings.roles:
        listed.append(f"roles {list(settings.roles)}")
    if settings.groups:
        listed.append(f"groups {list(settings.groups)}")
    if listed:
        return f"users with {' or '.join(listed)} need a second factor at login{_grace(config)}"
    return "users who enrol a second factor are asked for it at login"


def _grace(config: GatewayConfig) -> str:
    settings = config.second_factor
    assert settings is not None
    return " (once their enrolment grace period is over)" if settings.grace_period > 0 else ""


def second_factor_warnings(config: GatewayConfig) -> list[str]:
    if config.second_factor is None:
        return []
    warnings = []
    settings = config.second_factor
    if settings.grace_period > 0 and settings.required != "everyone" and not settings.roles and not settings.groups:
        warnings.append("second_factor.grace_period: no user must have a second factor (required: step_up without roles "
                        "or groups), so no login ever uses the enrolment grace period (docs/second-factor.md#enrolment-grace-period)")
    for i, profile in enumerate(config.compat.profiles):
        warnings.append(
            f"compat.profiles[{i}] ({profile.profile}): {_who(config)}, but this dialect's frontends do not know "
            "second_factor_required (some refresh and retry on any 401): their users' logins stop until the frontend "
            "handles it (docs/second-factor.md#the-login-flow)"
        )
    for i, route in enumerate(config.routes):
        style = route.errors or config.compat.errors
        if route.require.steps_up and style != "gateway":
            warnings.append(
                f"routes[{i}] ({route.name}): a step-up requirement answers 401 insufficient_user_authentication to "
                f"clients of the {style} dialect, which refresh and retry on a 401; a refreshed token never meets it "
                "(docs/second-factor.md#step-up-per-route)"
            )
    return warnings


def provider_level_warnings(config: GatewayConfig) -> list[str]:
    """Routes signing users in at an untrusted provider whose level nothing here can meet (no second_factor)."""
    if config.second_factor is not None:
        return []
    warnings = []
    for i, route in enumerate(config.routes):
        provider = config.oidc.providers.get(route.login or "")
        if provider is not None and not provider.trust_authentication and (route.require.acr or route.require.amr_any):
            warnings.append(
                f"routes[{i}] ({route.name}): its users sign in at {route.login}, whose amr is not trusted "
                f"(oidc.providers.{route.login}.trust_authentication), and without second_factor nothing else gives one: "
                "they can never meet its level (docs/second-factor.md#step-up-through-an-identity-provider)"
            )
    return warnings
