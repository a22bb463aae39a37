"""Admin endpoints for service keys: create (the key answered once), list, revoke (docs/service-keys.md).

A revocation is recorded in the database (``revoked_at``): this process forgets the key at once, every other
instance once its cache entry ends (``service_keys.cache``, the documented bound).
"""
from __future__ import annotations

import time

from aiohttp import web

from gateway.admin.base import AdminCall, AdminEndpoint, json_answer
from gateway.auth.service_keys import NAME, ServiceKeys, check_claims, generate_key, new_record
from gateway.config.types import parse_duration
from gateway.errors import ErrorCode, GatewayError

__all__ = ["ENDPOINTS"]

MAX_LIFETIME = 10 * 365 * 86400.0  # expires_in, at most


def _keys(call: AdminCall) -> ServiceKeys:
    keys = call.runtime.service_keys
    if keys is None:
        raise GatewayError(404, ErrorCode.SERVICE_KEY_NOT_FOUND, "Service keys are off (no service_keys section)")
    return keys


def _name(call: AdminCall, body: dict[str, object]) -> str:
    name = call.text_field(body, "name")
    assert name is not None
    if not NAME.match(name):
        raise GatewayError.bad_request("name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def _expires_in(value: object) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise GatewayError.bad_request("expires_in: expected a duration (90d, 12h, or seconds)") from None
    if not 0 < seconds <= MAX_LIFETIME:
        raise GatewayError.bad_request("expires_in: more than 0 and at most 10 years")
    return seconds


async def create(call: AdminCall) -> web.StreamResponse:
    """``POST service-keys`` with ``{name, owner, claims?, expires_in?}``: 201 with the key, shown this once."""
    keys = _keys(call)
    body = await call.json_body("name", "owner", "claims", "expires_in")
    name = _name(call, body)
    owner = call.text_field(body, "owner")
    assert owner is not None
    try:
        claims = check_claims(body.get("claims", {}))
    except ValueError as exc:
        raise GatewayError.bad_request(str(exc)) from None
    lifetime = _expires_in(body.get("expires_in"))
    now = time.time()
    key = generate_key()
    record = new_record(name, owner, claims, key, None if lifetime is None else int(now + lifetime), now)
    if not await keys.table.create(record):
        raise GatewayError(409, ErrorCode.SERVICE_KEY_EXISTS, f"A service key named {name!r} exists (revoked keys keep their name)")
    call.audit("service_key.created", subject=f"service:{name}", name=name, owner=owner, prefix=record.prefix,
               expires=record.expires_at)
    return json_answer({"key": key, **record.as_dict()}, status=201)


async def listing(call: AdminCall) -> web.StreamResponse:
    """``GET service-keys``: every key (revoked ones too), by name; never a key or its hash."""
    records = await _keys(call).table.listing()
    call.audit("admin.service_keys.listed", count=len(records))
    return json_answer({"service_keys": [r.as_dict() for r in records]})


async def revoke(call: AdminCall) -> web.StreamResponse:
    """``POST service-keys/revoke`` with ``{name}``: the key stops working (every instance within the cache bound)."""
    keys = _keys(call)
    body = await call.json_body("name")
    name = _name(call, body)
    if not await keys.table.revoke(name):
        raise GatewayError(404, ErrorCode.SERVICE_KEY_NOT_FOUND, f"No live service key named {name!r}")
    keys.forget(name)
    call.audit("service_key.revoked", subject=f"service:{name}", name=name)
    return json_answer({"revoked": name, "bound_seconds": keys.settings.cache})


ENDPOINTS = (
    AdminEndpoint("POST", "service-keys", create),
    AdminEndpoint("GET", "service-keys", listing),
    AdminEndpoint("POST", "service-keys/revoke", revoke),
)
