"""WebAuthn ceremonies (docs/second-factor.md#webauthn-and-passkeys), verified by Duo Labs' ``webauthn`` library.

The relying party is ``public_url``: its host is the RP ID, its origin the only
origin an answer may come from. Every challenge is random, single use and short
lived: it is kept in the state store under its own value (``put_once``) with what
it is for (registration, second step, passkey login), the user and the binding it
was issued under (the pending login's ``mfa_token`` digest, or the enrolling
session); ``take`` removes it, so an answer is checked against exactly one
challenge, once. The sign count is compared here, after the signature verified:
a count that does not move forward is refused as a possible clone
(``CloneSuspected``), and ``record_use`` moves it forward for one caller only.

Which ``amr`` an assertion earns: ``hwk`` when the credential is device-bound (the
authenticator's backup-eligibility flag is clear: the key cannot leave it), ``swk``
when it is a synced passkey (backup eligible: the key lives in a software keychain).
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import webauthn
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gateway.config.factors import WebAuthnSettings
from gateway.factors.store import Authenticator, CredentialStore
from gateway.stores.base import StateStore

__all__ = ["CeremonyError", "CloneSuspected", "Passkeys", "Verified", "relying_party"]

REGISTER, SECOND_STEP, PASSKEY = "register", "second_step", "passkey"
MAX_NAME = 64


class CeremonyError(Exception):
    """An answer that does not verify (the reason is for the log, never for the client)."""


class CloneSuspected(CeremonyError):
    """A valid signature whose sign count did not move forward: two copies of one authenticator."""

    def __init__(self, authenticator: Authenticator, count: int) -> None:
        super().__init__(f"sign count {count} not above the stored {authenticator.sign_count}")
        self.authenticator = authenticator


@dataclass(frozen=True)
class Verified:
    subject: str
    name: str
    amr: str  # "hwk" or "swk"
    user_verified: bool


def relying_party(public_url: str) -> tuple[str, str]:
    """(RP ID, origin) of ``public_url``."""
    parts = urlsplit(public_url)
    return parts.hostname or "", f"{parts.scheme}://{parts.netloc}"


def _amr(multi_device: bool) -> str:
    return "swk" if multi_device else "hwk"


def _transports(names: tuple[str, ...]) -> list[AuthenticatorTransport]:
    known = {t.value: t for t in AuthenticatorTransport}
    return [known[n] for n in names if n in known]


class Passkeys:
    def __init__(self, settings: WebAuthnSettings, public_url: str, credentials: CredentialStore, state: StateStore) -> None:
        self.settings = settings
        self.rp_id, self.origin = relying_party(public_url)
        self.credentials = credentials
        self.state = state

    @property
    def _uv(self) -> UserVerificationRequirement:
        return UserVerificationRequirement(self.settings.user_verification)

    async def _challenge(self, purpose: str, subject: str, binding: str) -> bytes:
        challenge = secrets.token_bytes(32)
        record = json.dumps({"purpose": purpose, "subject": subject, "binding": binding})
        await self.state.put_once(f"webauthn:{bytes_to_base64url(challenge)}", record, self.settings.challenge_lifetime)
        return challenge

    async def _spend(self, answer: dict[str, Any], purpose: str, subject: str | None, binding: str) -> bytes:
        """The challenge the answer signed, if it was issued for this purpose, user and binding (then never again)."""
        try:
            client_data = json.loads(webauthn.base64url_to_bytes(answer["response"]["clientDataJSON"]))
            challenge = str(client_data["challenge"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CeremonyError("no readable clientDataJSON") from exc
        raw = await self.state.take(f"webauthn:{challenge}")
        if raw is None:
            raise CeremonyError("unknown, used or expired challenge")
        record = json.loads(raw)
        if record["purpose"] != purpose or record["binding"] != binding or (subject is not None and record["subject"] != subject):
            raise CeremonyError("challenge issued for another ceremony, user or login")
        return webauthn.base64url_to_bytes(challenge)

    # -- registration -----------------------------------------------------------------

    async def registration_options(self, subject: str, binding: str) -> dict[str, Any]:
        existing = await self.credentials.authenticators(subject)
        options = webauthn.generate_registration_options(
            rp_id=self.rp_id, rp_name=self.settings.rp_name, user_name=subject, user_id=subject.encode(),
            challenge=await self._challenge(REGISTER, subject, binding),
            timeout=int(self.settings.challenge_lifetime * 1000),
            attestation=AttestationConveyancePreference(self.settings.attestation),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED if self.settings.passkey_login else ResidentKeyRequirement.DISCOURAGED,
                user_verification=self._uv,
            ),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(a.credential_id)) for a in existing],
        )
        loaded: dict[str, Any] = json.loads(webauthn.options_to_json(options))
        return loaded

    async def register(self, subject: str, binding: str, name: str, answer: dict[str, Any]) -> Authenticator:
        """Verify a ``navigator.credentials.create()`` answer and keep the credential under ``name``."""
        if not name or len(name) > MAX_NAME or not name.isprintable():
            raise CeremonyError("a name of 1-64 printable characters")
        challenge = await self._spend(answer, REGISTER, subject, binding)
        try:
            verified = webauthn.verify_registration_response(
                credential=answer, expected_challenge=challenge, expected_rp_id=self.rp_id, expected_origin=self.origin,
                require_user_verification=self.settings.user_verification == "required",
            )
        except WebAuthnException as exc:
            raise CeremonyError(f"registration: {exc}") from exc
        if self.settings.aaguids and verified.aaguid not in self.settings.aaguids:
            raise CeremonyError(f"authenticator model {verified.aaguid} is not in second_factor.webauthn.aaguids")
        transports = answer.get("response", {}).get("transports") or []
        authenticator = Authenticator(
            credential_id=bytes_to_base64url(verified.credential_id), subject=subject, name=name,
            public_key=bytes_to_base64url(verified.credential_public_key), sign_count=verified.sign_count,
            aaguid=verified.aaguid, transports=tuple(str(t) for t in transports if isinstance(t, str))[:8],
            multi_device=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            created_at=int(time.time()), last_used_at=None,
        )
        if not await self.credentials.add_authenticator(authenticator):
            raise CeremonyError("that name or credential is already registered")
        return authenticator

    # -- authentication ---------------------------------------------------------------

    async def assertion_options(self, subject: str | None, binding: str) -> dict[str, Any]:
        """Options of a second step (``subject``: the user's credentials allowed) or a passkey login (None: discoverable)."""
        allowed = [] if subject is None else await self.credentials.authenticators(subject)
        options = webauthn.generate_authentication_options(
            rp_id=self.rp_id, timeout=int(self.settings.challenge_lifetime * 1000),
            challenge=await self._challenge(SECOND_STEP if subject else PASSKEY, subject or "", binding),
            allow_credentials=[PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(a.credential_id),
                                                             transports=_transports(a.transports)) for a in allowed],
            user_verification=UserVerificationRequirement.REQUIRED if subject is None else self._uv,
        )
        loaded: dict[str, Any] = json.loads(webauthn.options_to_json(options))
        return loaded

    async def authenticate(self, subject: str | None, binding: str, answer: dict[str, Any]) -> Verified:
        """Verify a ``navigator.credentials.get()`` answer: the user's second step, or (``subject`` None) a passkey login."""
        passkey = subject is None
        challenge = await self._spend(answer, PASSKEY if passkey else SECOND_STEP, subject, binding)
        found = await self.credentials.authenticator(str(answer.get("id", "")))
        if found is None or (subject is not None and found.subject != subject):
            raise CeremonyError("not a credential of this user")
        if passkey and str(answer.get("response", {}).get("userHandle") or "") != bytes_to_base64url(found.subject.encode()):
            raise CeremonyError("the passkey's user handle is not its owner's")
        try:
            verified = webauthn.verify_authentication_response(
                credential=answer, expected_challenge=challenge, expected_rp_id=self.rp_id, expected_origin=self.origin,
                credential_public_key=webauthn.base64url_to_bytes(found.public_key),
                credential_current_sign_count=0,  # compared below, after the signature verified, to tell a clone apart
                require_user_verification=passkey or self.settings.user_verification == "required",
            )
        except WebAuthnException as exc:
            raise CeremonyError(f"assertion: {exc}") from exc
        count = verified.new_sign_count
        if (count > 0 or found.sign_count > 0) and count <= found.sign_count:
            raise CloneSuspected(found, count)
        if not await self.credentials.record_use(found.credential_id, found.sign_count, count):
            raise CeremonyError("the credential was used concurrently")
        return Verified(subject=found.subject, name=found.name, amr=_amr(found.multi_device), user_verified=verified.user_verified)
