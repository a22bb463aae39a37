"""The second-factor endpoints under ``second_factor.path``: list, enrol and confirm TOTP, remove it, new recovery codes.

Who may change a user's factors: the user with an access token whose login is at
most ``enrol_max_auth_age`` old and, once the user has a TOTP, was made with it
(``amr`` has ``otp``): a stolen password or an old session cannot swap in the
attacker's factor. A user whom policy requires to have a factor but who has none
yet enrols with the ``mfa_token`` of the password just proven (and then finishes
the login with that token alone). Every answer is ``no-store``.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Mapping

from aiohttp import web

from gateway.auth.cookies import CookieMode
from gateway.auth.credentials import authenticate
from gateway.auth.sessions import AuthService
from gateway.config import GatewayConfig
from gateway.context import SUBJECT
from gateway.endpoints.table import NO_STORE, Endpoint, json_response, read_fields
from gateway.errors import ErrorCode, GatewayError, insufficient_user_authentication
from gateway.factors import recovery
from gateway.factors.flow import FactorGate, PasskeyLogin
from gateway.factors.passkeys import CeremonyError, Passkeys
from gateway.observe.audit import emit

__all__ = ["check_fresh", "factor_endpoints", "has_factor"]

FACTORS = {"totp", "webauthn"}  # a user with one of these changes factors only after a login made with one
FACTOR_AMR = {"otp", "hwk", "swk"}
GET = frozenset({"GET", "HEAD"})
POST = frozenset({"POST"})
DELETE = frozenset({"DELETE"})


async def check_fresh(gate: FactorGate, claims: Mapping[str, Any]) -> None:
    """401 ``insufficient_user_authentication`` unless the session's login is at most ``enrol_max_auth_age`` old
    and, once the user has a factor, was made with one: the rule for every change of factors."""
    max_age = int(gate.settings.enrol_max_auth_age)
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int) or time.time() - auth_time > max_age:
        raise insufficient_user_authentication("Changing second factors needs a recent login; log in again",
                                               max_age=max_age)
    if await has_factor(gate, str(claims["sub"])) and not set(claims.get("amr") or []) & FACTOR_AMR:
        raise insufficient_user_authentication("Changing second factors needs a login with your current factor",
                                               max_age=max_age, acr_values="mfa")


async def has_factor(gate: FactorGate, subject: str) -> bool:
    """The user has a TOTP or an authenticator (recovery codes alone stand for nothing)."""
    return bool(set(await gate.credentials.methods(subject)) & FACTORS)


class FactorEndpoints:
    def __init__(self, config: GatewayConfig, gate: FactorGate, auth: AuthService, cookies: CookieMode | None) -> None:
        assert config.second_factor is not None
        self.settings = config.second_factor
        self.gate = gate
        self.auth = auth
        self.cookies = cookies

    async def _claims(self, request: web.Request) -> dict[str, Any]:
        claims = await authenticate(request, self.auth.tokens, self.auth.store, required=True, cookies=self.cookies)
        request[SUBJECT] = str(claims["sub"])
        return claims

    async def _fresh(self, request: web.Request) -> dict[str, Any]:
        """An access token of a recent login, made with the user's factor if the user has one."""
        claims = await self._claims(request)
        await check_fresh(self.gate, claims)
        return claims

    async def _enroller(self, request: web.Request, fields: Mapping[str, Any]) -> tuple[str, str | None]:
        """The user who enrols, and the mfa_token they came with (a user without any factor yet), if any."""
        token = fields.get("mfa_token")
        if token is None:
            return str((await self._fresh(request))["sub"]), None
        pending = await self.gate.peek(token)
        if await has_factor(self.gate, pending.subject):
            raise GatewayError(403, ErrorCode.PERMISSION_DENIED, "This user has a second factor: log in with it first")
        request[SUBJECT] = pending.subject
        return pending.subject, str(token)

    # -- handlers -----------------------------------------------------------------

    async def show(self, request: web.Request) -> web.Response:
        claims = await self._claims(request)
        subject = str(claims["sub"])
        methods = await self.gate.credentials.methods(subject)
        left = len(await self.gate.credentials.recovery_hashes(subject))
        body: dict[str, Any] = {"methods": methods, "required": self.gate.required_for(claims), "recovery_codes_left": left}
        if self.gate.passkeys is not None:
            body["authenticators"] = [{"name": a.name, "kind": "synced" if a.multi_device else "device_bound",
                                       "aaguid": a.aaguid, "created_at": a.created_at, "last_used_at": a.last_used_at}
                                      for a in await self.gate.credentials.authenticators(subject)]
        return json_response(body, headers=NO_STORE)

    async def begin_totp(self, request: web.Request) -> web.Response:
        subject, _ = await self._enroller(request, await read_fields(request))
        secret = self.gate.totp.new_secret()
        await self.gate.credentials.put_pending_totp(subject, secret)
        return json_response(self.gate.totp.provisioning(secret, subject), headers=NO_STORE)

    async def confirm_totp(self, request: web.Request) -> web.Response:
        fields = await read_fields(request)
        subject, token = await self._enroller(request, fields)
        secret = await self.gate.credentials.pending_totp(subject)
        if secret is None:
            raise GatewayError(409, ErrorCode.BAD_REQUEST, f"No enrolment in progress: POST {self.settings.path}/totp first")
        client = self.auth.throttle.client_of(request) if self.auth.throttle else request.remote
        await self.gate.throttle.attempt(subject, client)
        if not await self.gate.totp.accept(subject, secret, fields.get("code")):
            emit("second_factor.failed", request, subject=subject, reason="wrong_code", method="totp", step="enrolment")
            raise GatewayError.unauthorized(ErrorCode.SECOND_FACTOR_INVALID, "The code is not valid", token_presented=False)
        await self.gate.throttle.give_back(subject, client)
        await self.gate.credentials.activate_totp(subject, secret)
        body: dict[str, Any] = {"methods": await self.gate.credentials.methods(subject)}
        if not await self.gate.credentials.recovery_hashes(subject):
            body["recovery_codes"] = await self._new_codes(subject)
            body["methods"] = await self.gate.credentials.methods(subject)
        emit("second_factor.enrolled", request, subject=subject, method="totp", methods=body["methods"])
        if token is not None:
            await self.gate.mark_verified(token)
            body["next"] = "post the mfa_token alone to the login endpoint to finish the login"
        return json_response(body, headers=NO_STORE)

    async def remove_totp(self, request: web.Request) -> web.Response:
        claims = await self._fresh(request)
        subject = str(claims["sub"])
        if self.gate.required_for(claims):
            raise GatewayError(409, ErrorCode.FACTOR_REQUIRED, "This user must have a second factor: enrol a new one instead")
        removed = await self.gate.credentials.remove_totp(subject)
        await self.gate.credentials.replace_recovery(subject, [])  # recovery codes stand in for a factor that is gone
        emit("second_factor.removed", request, subject=subject, method="totp")
        return json_response({"removed": removed, "methods": await self.gate.credentials.methods(subject)}, headers=NO_STORE)

    async def regenerate_codes(self, request: web.Request) -> web.Response:
        subject = str((await self._fresh(request))["sub"])
        if not await has_factor(self.gate, subject):
            raise GatewayError(409, ErrorCode.BAD_REQUEST, "Recovery codes need a second factor: enrol one first")
        codes = await self._new_codes(subject)
        emit("second_factor.recovery_codes_replaced", request, subject=subject, count=len(codes))
        return json_response({"recovery_codes": codes}, headers=NO_STORE)

    # -- WebAuthn -------------------------------------------------------------------

    def _passkeys(self) -> Passkeys:
        passkeys = self.gate.passkeys
        if passkeys is None:
            raise GatewayError(404, ErrorCode.NOT_FOUND, "WebAuthn is not enabled (second_factor.webauthn)")
        return passkeys

    @staticmethod
    def _binding(subject: str, token: str | None) -> str:
        """A registration challenge belongs to its user and to the pending login (mfa_token) or fresh session it began in."""
        return f"enrol:{subject}:{'fresh' if token is None else hashlib.sha256(token.encode()).hexdigest()}"

    async def begin_webauthn(self, request: web.Request) -> web.Response:
        passkeys = self._passkeys()
        subject, token = await self._enroller(request, await read_fields(request))
        return json_response({"publicKey": await passkeys.registration_options(subject, self._binding(subject, token))},
                             headers=NO_STORE)

    async def confirm_webauthn(self, request: web.Request) -> web.Response:
        passkeys = self._passkeys()
        fields = await read_fields(request)
        subject, token = await self._enroller(request, fields)
        credential = fields.get("credential")
        if not isinstance(credential, dict) or not isinstance(fields.get("name"), str):
            raise GatewayError.bad_request("Send name and credential (navigator.credentials.create's answer, as JSON)")
        try:
            added = await passkeys.register(subject, self._binding(subject, token), fields["name"], credential)
        except CeremonyError as exc:
            emit("second_factor.failed", request, subject=subject, reason="wrong_code", method="webauthn", step="enrolment")
            raise GatewayError.unauthorized(ErrorCode.SECOND_FACTOR_INVALID, f"The authenticator was not registered: {exc}",
                                            token_presented=False) from None
        body: dict[str, Any] = {"methods": await self.gate.credentials.methods(subject), "name": added.name}
        if not await self.gate.credentials.recovery_hashes(subject):
            body["recovery_codes"] = await self._new_codes(subject)
            body["methods"] = await self.gate.credentials.methods(subject)
        emit("second_factor.enrolled", request, subject=subject, method="webauthn", name=added.name, methods=body["methods"])
        if token is not None:
            await self.gate.mark_verified(token, ("pwd", "swk" if added.multi_device else "hwk", "mfa"))
            body["next"] = "post the mfa_token alone to the login endpoint to finish the login"
        return json_response(body, headers=NO_STORE)

    async def remove_webauthn(self, request: web.Request) -> web.Response:
        self._passkeys()
        claims = await self._fresh(request)
        subject = str(claims["sub"])
        name = (await read_fields(request)).get("name") or request.query.get("name")
        if not isinstance(name, str):
            raise GatewayError.bad_request("Send the name of the authenticator to remove")
        others = [a for a in await self.gate.credentials.authenticators(subject) if a.name != name]
        if self.gate.required_for(claims) and not others and "totp" not in await self.gate.credentials.methods(subject):
            raise GatewayError(409, ErrorCode.FACTOR_REQUIRED, "This user must have a second factor: add another one first")
        removed = await self.gate.credentials.remove_authenticator(subject, name)
        if removed:
            emit("second_factor.removed", request, subject=subject, method="webauthn", name=name)
        return json_response({"removed": removed, "methods": await self.gate.credentials.methods(subject)}, headers=NO_STORE)

    async def login_options(self, request: web.Request) -> web.Response:
        """A new assertion challenge for a pending login (its mfa_token), e.g. after a cancelled ceremony."""
        fields = await read_fields(request)
        return json_response({"publicKey": await self.gate.assertion_options(fields.get("mfa_token"))}, headers=NO_STORE)

    async def passkey_options(self, request: web.Request) -> web.Response:
        """The challenge of a passkey login (no user named: the browser offers the site's discoverable credentials).

        Each one is state in the store made for anybody who asks, so it counts as a login attempt of the address
        (``login_throttle.rate_per_ip``, across instances): past it, 429 with Retry-After."""
        login = PasskeyLogin(self.gate)
        login.check_enabled()
        if self.auth.throttle is not None:
            await self.auth.throttle.count_attempt(self.auth.throttle.client_of(request))
        return json_response({"publicKey": await login.options()}, headers=NO_STORE)

    async def _new_codes(self, subject: str) -> list[str]:
        codes = recovery.generate(self.settings.recovery_codes)
        await self.gate.credentials.replace_recovery(subject, await recovery.hash_codes(codes))
        return codes


def factor_endpoints(config: GatewayConfig, gate: FactorGate, auth: AuthService, cookies: CookieMode | None) -> dict[str, Endpoint]:
    handlers = FactorEndpoints(config, gate, auth, cookies)
    path = gate.settings.path
    return {
        path: Endpoint(GET, handlers.show),
        f"{path}/totp": Endpoint(POST | DELETE, _by_method({"POST": handlers.begin_totp, "DELETE": handlers.remove_totp})),
        f"{path}/totp/confirm": Endpoint(POST, handlers.confirm_totp),
        f"{path}/recovery-codes": Endpoint(POST, handlers.regenerate_codes),
        f"{path}/webauthn": Endpoint(POST | DELETE, _by_method({"POST": handlers.begin_webauthn,
                                                                 "DELETE": handlers.remove_webauthn})),
        f"{path}/webauthn/confirm": Endpoint(POST, handlers.confirm_webauthn),
        f"{path}/webauthn/login-options": Endpoint(POST, handlers.login_options),
        f"{path}/passkey/options": Endpoint(POST, handlers.passkey_options),
    }


def _by_method(handlers: Mapping[str, Any]) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await handlers[request.method](request)  # type: ignore[no-any-return]

    return handler
