"""The second step of a login: who must show a factor, the ``mfa_token`` of a proven password, and checking the code.

A correct password of a user who needs a second factor is not a success yet:
``gate`` answers 401 ``second_factor_required`` with a short-lived ``mfa_token``
(a random value; the store keeps only its hash, with the proven user and the
login endpoint it belongs to) and the user's methods. ``complete`` takes the token
back with a TOTP or recovery code: the token is taken from the shared store (one
caller gets it), a wrong code puts it back with one attempt less (``MAX_ATTEMPTS``
per token), a right one spends it for good. Failed codes count per user and per
address in the store, so the limit holds across every instance; so do a step-up's
(``reverify``: a code, or a WebAuthn assertion answering ``step_up_options``, a
challenge bound to the user and the session), and a refused passkey login's (per
address only: nobody is named before the passkey verifies).

Nothing here runs before the password is proven: an unknown user, a wrong
password and a user without a factor look the same to a guesser.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Mapping

from gateway.config.factors import SecondFactor
from gateway.errors import ErrorCode, GatewayError
from gateway.factors import recovery
from gateway.factors.passkeys import CeremonyError, CloneSuspected, Passkeys
from gateway.factors.store import CredentialStore
from gateway.factors.totp import Totp
from gateway.net import ip_bucket
from gateway.observe.audit import emit
from gateway.stores import LimitStore, StateStore

__all__ = ["FactorGate", "PasskeyLogin", "Pending", "SecondFactorRequired"]

log = logging.getLogger("gateway.factors")

PASSKEY_BINDING = "passkey-login"  # a passkey login has no pending login: its challenges are single use and short lived
MAX_ATTEMPTS = 3  # codes per mfa_token; then the password again
AMR_TOTP = ("pwd", "otp", "mfa")  # RFC 8176: password, one-time password, more than one factor
AMR_RECOVERY = ("pwd", "otp", "mfa")  # a recovery code is a one-time password too


class SecondFactorRequired(GatewayError):
    """401 ``second_factor_required``; ``fields`` go into the answer's body beside detail and code."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__(401, ErrorCode.SECOND_FACTOR_REQUIRED,
                         "A second factor is required: send the mfa_token with a code to the same endpoint")
        self.fields = dict(fields)


@dataclass(frozen=True, slots=True)
class Pending:
    """A proven password waiting for (or done with) its second factor."""

    subject: str
    claims: dict[str, Any]
    extra: dict[str, Any] | None
    amr: tuple[str, ...]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _invalid_token() -> GatewayError:
    return GatewayError.unauthorized(ErrorCode.MFA_TOKEN_INVALID, "The mfa_token is unknown, expired or already used; log in again",
                                     token_presented=False)


def _wrong_code() -> GatewayError:
    return GatewayError.unauthorized(ErrorCode.SECOND_FACTOR_INVALID, "The code is not valid", token_presented=False)


class FactorThrottle:
    """Failed codes per user and per address, counted in the store; a slot is taken before a code is checked.

    A passkey login names no user before its assertion verifies: it counts per address only (``subject`` None)."""

    def __init__(self, settings: SecondFactor, limits: LimitStore) -> None:
        self.settings = settings.throttle
        self.limits = limits

    def _keys(self, subject: str | None, client: str | None) -> list[tuple[str, int]]:
        keys = [] if subject is None else [(f"mfa:fail:user:{_digest(subject)[:32]}", self.settings.per_user)]
        if client is not None:
            keys.append((f"mfa:fail:ip:{ip_bucket(client)}", self.settings.per_ip))
        return keys

    async def attempt(self, subject: str | None, client: str | None) -> None:
        taken: list[str] = []
        for key, limit in self._keys(subject, client):
            count = await self.limits.incr_counter(key, self.settings.window)
            taken.append(key)
            if count.count > limit:
                for back in taken:
                    await self.limits.incr_counter(back, self.settings.window, -1)
                raise GatewayError(429, ErrorCode.RATE_LIMITED, "Too many wrong codes; try again later",
                                   headers={"Retry-After": str(max(1, math.ceil(count.resets_in)))})

    async def give_back(self, subject: str | None, client: str | None) -> None:
        """A right code (or one that could not be checked) does not count as a failure."""
        for key, _ in self._keys(subject, client):
            await self.limits.incr_counter(key, self.settings.window, -1)


class FactorGate:
    def __init__(self, settings: SecondFactor, credentials: CredentialStore, state: StateStore, limits: LimitStore,
                 public_url: str | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        self.state = state
        self.public_url = public_url
        self.totp = Totp(state, settings.totp_window, settings.issuer_name)
        self.throttle = FactorThrottle(settings, limits)

    @property
    def passkeys(self) -> Passkeys | None:
        """The WebAuthn ceremonies, if ``second_factor.webauthn`` is on (on the current credentials store: a reload keeps it)."""
        if self.settings.webauthn is None or self.public_url is None:
            return None
        return Passkeys(self.settings.webauthn, self.public_url, self.credentials, self.state)

    def required_for(self, claims: Mapping[str, Any]) -> bool:
        """True when policy says this user must have a second factor (everyone, or a listed role or group)."""
        if self.settings.required == "everyone":
            return True
        return bool(_names(claims.get("roles")) & set(self.settings.roles)
                    or _names(claims.get("groups")) & set(self.settings.groups))

    # -- the mfa_token ----------------------------------------------------------------

    async def gate(self, subject: str, claims: Mapping[str, Any], extra: Mapping[str, Any] | None,
                   bound_to: str) -> int | None:
        """None if the user logs in with the password alone; the deadline (Unix seconds) of the enrolment grace
        period if the user must have a factor, has none and is within it (the password alone too); raise
        ``SecondFactorRequired`` otherwise."""
        usable = ("totp", "webauthn") if self.passkeys is not None else ("totp",)
        methods = [m for m in await self.credentials.methods(subject) if m in usable]
        required = self.required_for(claims)
        if not methods and not required:
            return None
        if not methods and (deadline := await self._grace(subject)) is not None:
            return deadline
        if methods and await self.credentials.recovery_hashes(subject):
            methods.append("recovery")
        token = secrets.token_urlsafe(32)
        record = {"sub": subject, "claims": dict(claims), "extra": dict(extra) if extra else None, "bound": bound_to,
                  "deadline": time.time() + self.settings.mfa_token_lifetime, "attempts": 0, "verified": False}
        await self.state.put_once(f"mfa:login:{_digest(token)}", json.dumps(record), self.settings.mfa_token_lifetime)
        fields: dict[str, Any] = {"mfa_token": token, "methods": methods, "expires_in": int(self.settings.mfa_token_lifetime)}
        if "webauthn" in methods and (passkeys := self.passkeys) is not None:
            fields["webauthn"] = await passkeys.assertion_options(subject, _digest(token))  # for navigator.credentials.get
        if not methods:
            fields["enrol"] = f"{self.settings.path}/totp"  # required but none yet: enrol with this mfa_token first
        raise SecondFactorRequired(fields)

    async def _grace(self, subject: str) -> int | None:
        """The deadline while the user's enrolment grace runs (its first moment written now if this is the first
        such login); None without grace or once it is over (its end reported once, by one instance)."""
        period = self.settings.grace_period
        if period <= 0:
            return None
        records = self.credentials.grace
        grace, started = await records.begin(subject)
        deadline = grace.deadline(period)
        if grace.open_at(records.clock(), period):
            emit("second_factor.grace_login", subject=subject, deadline=deadline, first=started)
            return deadline
        if grace.ended_at is None and await records.end(subject):
            emit("second_factor.grace_ended", subject=subject, reason="expired", deadline=deadline)
        return None

    async def _take(self, token: object) -> tuple[str, dict[str, Any]]:
        if not isinstance(token, str) or not 16 <= len(token) <= 128:
            raise _invalid_token()
        key = f"mfa:login:{_digest(token)}"
        raw = await self.state.take(key)
        if raw is None:
            raise _invalid_token()
        record: dict[str, Any] = json.loads(raw)
        if record["deadline"] <= time.time():
            raise _invalid_token()
        return key, record

    async def _put_back(self, key: str, record: dict[str, Any]) -> None:
        remaining = record["deadline"] - time.time()
        if remaining > 0:
            await self.state.put_once(key, json.dumps(record), remaining)

    async def peek(self, token: object) -> Pending:
        """The user of a live mfa_token, which stays usable (enrolment of a user who has no factor yet)."""
        key, record = await self._take(token)
        await self._put_back(key, record)
        return Pending(record["sub"], record["claims"], record["extra"], ())

    async def mark_verified(self, token: object, amr: tuple[str, ...] = AMR_TOTP) -> None:
        """The token's user just confirmed a new factor (a valid code, a verified registration): the login may finish
        without another, with that factor's ``amr``."""
        key, record = await self._take(token)
        record["verified"] = list(amr)
        await self._put_back(key, record)

    # -- the second step ----------------------------------------------------------------

    async def assertion_options(self, token: object) -> dict[str, Any]:
        """A new WebAuthn challenge for the login of a live mfa_token (after a failed or abandoned ceremony)."""
        key, record = await self._take(token)
        await self._put_back(key, record)
        passkeys = self.passkeys
        if passkeys is None or "webauthn" not in await self.credentials.methods(record["sub"]):
            raise GatewayError(409, ErrorCode.BAD_REQUEST, "This login has no WebAuthn authenticator to use")
        return await passkeys.assertion_options(record["sub"], key.rsplit(":", 1)[1])

    async def complete(self, token: object, code: object, recovery_code: object, client: str | None, bound_to: str,
                       assertion: object = None) -> Pending:
        """The proven user of ``token`` if the code (or WebAuthn assertion) is right; the token is spent then, and only then."""
        key, record = await self._take(token)
        if record["bound"] != bound_to:
            raise _invalid_token()  # an mfa_token of another login endpoint (dialect) is spent, not honoured
        subject = record["sub"]
        if record.get("verified"):
            verified = record["verified"]
            return Pending(subject, record["claims"], record["extra"], tuple(verified) if isinstance(verified, list) else AMR_TOTP)
        try:
            await self.throttle.attempt(subject, client)
        except GatewayError:
            await self._put_back(key, record)
            raise
        try:
            amr = await self._check(subject, code, recovery_code, assertion, key.rsplit(":", 1)[1])
        except BaseException:
            await self.throttle.give_back(subject, client)
            await self._put_back(key, record)
            raise
        method = "webauthn" if assertion is not None else "recovery" if code is None else "totp"
        if amr is None:
            emit("second_factor.failed", subject=subject, reason="wrong_code", method=method)
            record["attempts"] += 1
            if record["attempts"] < MAX_ATTEMPTS:
                await self._put_back(key, record)
            raise _wrong_code()
        await self.throttle.give_back(subject, client)
        emit("second_factor.verified", subject=subject, method=method)
        return Pending(subject, record["claims"], record["extra"], amr)

    async def step_up_options(self, subject: str, family: str) -> dict[str, Any]:
        """A WebAuthn challenge for a step-up of ``subject`` in session ``family`` (409 without an authenticator)."""
        passkeys = self.passkeys
        if passkeys is None or "webauthn" not in await self.credentials.methods(subject):
            raise GatewayError(409, ErrorCode.FACTOR_REQUIRED, "No WebAuthn authenticator to check: use a code instead")
        return await passkeys.assertion_options(subject, _step_up_binding(family))

    async def reverify(self, subject: str, code: object, recovery_code: object, client: str | None,
                       assertion: object = None, family: str = "") -> tuple[str, ...]:
        """Step-up: the ``amr`` of a factor checked again for a signed-in user (a TOTP or recovery code, or a WebAuthn
        assertion answering a challenge of ``step_up_options`` for this user and session); throttled like the login's
        second step. A step-up proves no password: ``pwd`` is never added."""
        await self.throttle.attempt(subject, client)
        try:
            amr = await self._check(subject, code, recovery_code, assertion, _step_up_binding(family))
        except BaseException:
            await self.throttle.give_back(subject, client)
            raise
        method = "webauthn" if assertion is not None else "recovery" if code is None else "totp"
        if amr is None:
            emit("second_factor.failed", subject=subject, reason="wrong_code", method=method, step="step_up")
            raise _wrong_code()
        await self.throttle.give_back(subject, client)
        emit("second_factor.verified", subject=subject, method=method, step="step_up")
        return tuple(m for m in amr if m != "pwd")

    async def _check(self, subject: str, code: object, recovery_code: object, assertion: object,
                     binding: str) -> tuple[str, ...] | None:
        if assertion is not None:
            return await self._check_assertion(subject, assertion, binding)
        if code is not None:
            secret = await self.credentials.totp_secret(subject)
            return AMR_TOTP if secret is not None and await self.totp.accept(subject, secret, code) else None
        if recovery_code is not None:
            name = await recovery.verify(recovery_code, await self.credentials.recovery_hashes(subject))
            if name is not None and await self.credentials.spend_recovery(subject, name):
                left = len(await self.credentials.recovery_hashes(subject))
                log.warning("second factor: a recovery code was used (user digest %s, %d left)", _digest(subject)[:12], left)
                emit("second_factor.recovery_used", subject=subject, left=left)
                return AMR_RECOVERY
            return None
        raise GatewayError.bad_request("Send the mfa_token with a code (TOTP), a webauthn assertion or a recovery_code")

    async def _check_assertion(self, subject: str, assertion: object, binding: str) -> tuple[str, ...] | None:
        passkeys = self.passkeys
        if passkeys is None or not isinstance(assertion, dict):
            raise GatewayError.bad_request("webauthn: the PublicKeyCredential of navigator.credentials.get, as JSON")
        try:
            verified = await passkeys.authenticate(subject, binding, assertion)
        except CloneSuspected as exc:
            clone_suspected(subject, exc)
            return None
        except CeremonyError as exc:
            log.info("second factor: a WebAuthn assertion was refused (user digest %s): %s", _digest(subject)[:12], exc)
            return None
        return ("pwd", verified.amr, "mfa")


class PasskeyLogin:
    """A passkey (discoverable credential, user verified) standing for both factors: ``second_factor.webauthn.passkey_login``."""

    def __init__(self, gate: FactorGate) -> None:
        self.gate = gate

    def _passkeys(self) -> Passkeys:
        passkeys = self.gate.passkeys
        webauthn = self.gate.settings.webauthn
        if passkeys is None or webauthn is None or not webauthn.passkey_login:
            raise GatewayError(404, ErrorCode.NOT_FOUND, "Passkey login is not enabled (second_factor.webauthn.passkey_login)")
        return passkeys

    def check_enabled(self) -> None:
        """404 ``not_found`` unless passkey logins are on."""
        self._passkeys()

    async def options(self) -> dict[str, Any]:
        return await self._passkeys().assertion_options(None, PASSKEY_BINDING)

    async def verify(self, assertion: object, client: str | None) -> tuple[str, tuple[str, ...]]:
        """The passkey's user and the ``amr`` of the login (``hwk``/``swk`` and ``mfa``); 401 for anything else.

        A refused assertion counts against ``client``'s address in the factor throttle (across instances: the
        store), so passkey guesses are limited like wrong codes (429 ``rate_limited`` with Retry-After)."""
        passkeys = self._passkeys()
        if not isinstance(assertion, dict):
            raise GatewayError.bad_request("passkey: the PublicKeyCredential of navigator.credentials.get, as JSON")
        throttle = self.gate.throttle
        await throttle.attempt(None, client)
        try:
            verified = await passkeys.authenticate(None, PASSKEY_BINDING, assertion)
        except CloneSuspected as exc:
            clone_suspected(exc.authenticator.subject, exc)
            raise _wrong_code() from None
        except CeremonyError as exc:
            log.info("passkey login refused: %s", exc)
            emit("second_factor.failed", reason="wrong_code", method="passkey")
            raise _wrong_code() from None
        except BaseException:
            await throttle.give_back(None, client)  # not decided (a store or database fault): not a failure
            raise
        await throttle.give_back(None, client)
        emit("second_factor.verified", subject=verified.subject, method="passkey")
        return verified.subject, (verified.amr, "mfa")


def clone_suspected(subject: str, exc: CloneSuspected) -> None:
    """A valid signature with a sign count that went back: logged and audited, the assertion refused."""
    log.warning("second factor: possible cloned WebAuthn authenticator %r of user digest %s (%s)",
                exc.authenticator.name, _digest(subject)[:12], exc)
    emit("second_factor.clone_suspected", subject=subject, authenticator=exc.authenticator.name)


def _step_up_binding(family: str) -> str:
    """What a step-up challenge is bound to besides its user: the session (family) it was issued for."""
    return f"step-up:{family}"


def _names(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, (list, tuple)):
        return {str(v) for v in value}
    return set()
