"""Strict reading of compact JWS tokens: what PyJWT lets through, the gateway refuses.

PyJWT silently keeps the last of duplicate JSON members, converts
``"exp": "9999999999"`` with ``int()``, and honours ``b64``; a token whose
header or payload means different things to different parsers is an attack
surface, so these checks run around every ``jwt.decode`` of the gateway's own
and of external issuers' tokens. All failures are ``ValueError`` with a
client-safe message; callers turn them into a 401.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

__all__ = ["FORBIDDEN_HEADERS", "MAX_TOKEN_LENGTH", "check_payload", "peek_claims", "read_header"]

MAX_TOKEN_LENGTH = 8192
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
# Parameters that would make a verifier fetch or trust key material named by the
# token itself (jku, x5u, jwk, x5c), extensions it must understand (crit), or an
# unencoded payload (b64). The gateway never follows them, so it refuses them.
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64"})
NUMERIC_DATES = ("exp", "iat", "nbf")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _segment(segment: str, what: str) -> dict[str, Any]:
    """A base64url JSON object with unique member names, or ValueError."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ValueError(f"Token {what} is not valid JSON with unique member names") from None
    if not isinstance(value, dict):
        raise ValueError(f"Token {what} is not a JSON object")
    return value


def _segments(token: object) -> list[str]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.match(token):
        raise ValueError("Token is malformed")
    return token.split(".")


def read_header(token: object, *, require_kid: bool = True) -> dict[str, Any]:
    """The JOSE header of a well-shaped token, refused if it asks for anything the gateway won't do.
    ``require_kid=False`` leaves the ``kid`` check to the caller (to name a refused ``alg`` first)."""
    header = _segment(_segments(token)[0], "header")
    if FORBIDDEN_HEADERS & header.keys():
        raise ValueError("Token header uses a parameter the gateway does not accept")
    if str(header.get("cty", "")).upper() == "JWT":
        raise ValueError("Nested tokens are not accepted")
    if not isinstance(header.get("alg"), str) or (require_kid and not isinstance(header.get("kid"), str)):
        raise ValueError("Token header needs alg and kid")
    return header


def peek_claims(token: object) -> dict[str, Any]:
    """The payload, NOT verified: only to choose which issuer's keys verify the token."""
    return _segment(_segments(token)[1], "payload")


def check_payload(token: str, claims: dict[str, Any]) -> None:
    """After signature checks: no duplicate members, and dates that are real numbers."""
    _segment(token.split(".")[1], "payload")
    for name in NUMERIC_DATES:
        value = claims.get(name)
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
            raise ValueError(f"Token {name} claim is not a number")
