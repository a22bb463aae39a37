"""Verifying tokens: every forgery and mismatch is a 401 with the right code."""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from gateway.auth.keys import KeyRing
from gateway.auth.tokens import TokenService
from gateway.config import Tokens
from gateway.errors import GatewayError
from tests.conftest import SECRET

SETTINGS = Tokens(secret=SECRET, issuer="iss-a", audience="aud-a", leeway=0)


@pytest.fixture
def service() -> TokenService:
    return TokenService(SETTINGS, KeyRing.from_config(SETTINGS))


def code_of(service: TokenService, token: object, token_type: str = "access") -> str:
    with pytest.raises(GatewayError) as info:
        service.verify(token, token_type)
    assert info.value.status == 401
    return info.value.code


def forge(service: TokenService, key: str | bytes = SECRET, alg: str = "HS256", headers: dict | None = None, **changes) -> str:
    """A token like the service's own, with claims or header changed."""
    pair = service.mint_pair("alice", {"roles": ["user"]})
    claims = {**pair.access_claims, **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": service.keys.active.kid, **(headers or {})})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip(service):
    pair = service.mint_pair("alice", {"roles": ["user"], "email": "a@x"})
    claims = service.verify(pair.access)
    assert claims["sub"] == "alice" and claims["roles"] == ["user"] and claims["fid"] == pair.refresh_claims["fid"]
    assert service.verify(pair.refresh, "refresh")["token_type"] == "refresh"
    assert pair.access_claims["jti"] != pair.refresh_claims["jti"]


def test_tampered_payload(service):
    token = service.mint_pair("bob", {"roles": ["user"]}).access
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["admin"]
    assert code_of(service, f"{head}.{b64(json.dumps(claims).encode())}.{sig}") == "token_not_valid"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_every_casing(service, alg):
    token = forge(service)
    header = {"alg": alg, "typ": "JWT", "kid": service.keys.active.kid}
    unsigned = f"{b64(json.dumps(header).encode())}.{token.split('.')[1]}."
    assert code_of(service, unsigned) == "token_not_valid"


def test_other_secret(service):
    assert code_of(service, forge(service, key="another-secret-that-is-also-long-enough!")) == "token_not_valid"


def test_wrong_audience_and_issuer(service):
    assert code_of(service, forge(service, aud="someone-else")) == "token_not_valid"
    assert code_of(service, forge(service, iss="evil-issuer")) == "token_not_valid"


def test_expired_and_not_yet_valid(service):
    now = int(time.time())
    assert code_of(service, forge(service, iat=now - 100, nbf=now - 100, exp=now - 10)) == "token_expired"
    assert code_of(service, forge(service, nbf=now + 100)) == "token_not_valid"


def test_leeway_tolerates_small_skew():
    settings = Tokens(secret=SECRET, issuer="iss-a", audience="aud-a", leeway=30)
    service = TokenService(settings, KeyRing.from_config(settings))
    assert service.verify(forge(service, exp=int(time.time()) - 5))["sub"] == "alice"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"])
def test_required_claims(service, claim):
    assert code_of(service, forge(service, **{claim: None})) == "token_not_valid"


def test_unknown_kid(service):
    assert code_of(service, forge(service, headers={"kid": "someone-elses-key"})) == "token_not_valid"


def test_wrong_type(service):
    pair = service.mint_pair("alice", {})
    assert code_of(service, pair.refresh, "access") == "token_not_valid"
    assert code_of(service, pair.access, "refresh") == "token_not_valid"
    assert code_of(service, forge(service, token_type="id")) == "token_not_valid"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c.d", "!!.??.##", "e30.e30.", "x" * 10000, None, 42, b"bytes"])
def test_garbage_is_not_valid(service, garbage):
    assert code_of(service, garbage) == "token_not_valid"


@pytest.mark.parametrize("header", [{"jku": "http://127.0.0.1:1/jwks"}, {"x5u": "http://127.0.0.1:1/x"}, {"crit": ["exp"]}])
def test_headers_that_point_elsewhere_are_refused(service, header):
    assert code_of(service, forge(service, headers=header)) == "token_not_valid"


def test_check_expiry_false_for_logout(service):
    now = int(time.time())
    token = forge(service, iat=now - 100, nbf=now - 100, exp=now - 10)
    assert service.verify(token, check_expiry=False)["sub"] == "alice"


def test_verified_access_tokens_are_remembered_until_they_expire(service, monkeypatch):
    token = service.mint_pair("alice", {"roles": ["user"]}).access
    first = service.verify(token)
    calls = []
    monkeypatch.setattr(service, "_verify", lambda *a, **k: calls.append(a) or first)
    assert service.verify(token) is first and calls == []  # a hit skips parsing and the signature
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # past exp + leeway
    assert service.verify(token) is first and len(calls) == 1  # expired entry: verified afresh


def test_only_verified_tokens_are_remembered(service):
    token = forge(service, key="another-secret-that-is-also-long-enough!")
    for _ in range(2):
        assert code_of(service, token) == "token_not_valid"
