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


# -- what the mutation run (docs/mutation.md) found untested; expectations are written out, never read from the module

def refusal(service: TokenService, token: object, token_type: str | None = "access") -> GatewayError:
    with pytest.raises(GatewayError) as info:
        service.verify(token, token_type)
    assert info.value.status == 401 and info.value.code == "token_not_valid"
    return info.value


def test_a_refresh_token_used_at_the_refresh_endpoint_is_still_no_access_token(service):
    refresh = service.mint_pair("alice", {}).refresh
    assert service.verify(refresh, "refresh")["token_type"] == "refresh"  # as the refresh endpoint does
    assert refusal(service, refresh).detail == "Token has wrong type (expected access)"  # then as a bearer token
    assert refusal(service, refresh).detail == "Token has wrong type (expected access)"


def test_the_verify_endpoint_takes_either_type(service):
    pair = service.mint_pair("alice", {})
    assert service.verify(pair.access, None)["token_type"] == "access"
    assert service.verify(pair.refresh, None)["token_type"] == "refresh"
    assert refusal(service, forge(service, token_type="id"), None).detail == "Token has wrong type (expected access or refresh)"
    assert refusal(service, pair.access, "refresh").detail == "Token has wrong type (expected refresh)"


def test_expired_refresh_tokens_are_refused(service):
    now = int(time.time())
    pair = service.mint_pair("alice", {})
    expired = jwt.encode({**pair.refresh_claims, "iat": now - 100, "nbf": now - 100, "exp": now - 10}, SECRET,
                         algorithm="HS256", headers={"kid": service.keys.active.kid})
    with pytest.raises(GatewayError) as info:
        service.verify(expired, "refresh")
    assert info.value.code == "token_expired"
    assert service.verify(expired, "refresh", check_expiry=False)["sub"] == "alice"  # logout


def test_refusals_say_which_check_refused(service):
    assert refusal(service, "abc").detail == "Token is malformed"
    assert refusal(service, forge(service, headers={"kid": "someone-elses-key"})).detail == "Token is signed with an unknown key"
    hs384 = jwt.encode({"sub": "x"}, SECRET * 2, algorithm="HS384", headers={"kid": service.keys.active.kid})
    assert refusal(service, hs384).detail == "Token algorithm does not match its key"
    assert refusal(service, forge(service, fid=None)).detail == "Token has no family"
    assert refusal(service, forge(service, fid=7)).detail == "Token has no family"
    duplicated = forge(service).split(".")
    payload = json.loads(base64.urlsafe_b64decode(duplicated[1] + "=="))
    body = json.dumps(payload)[:-1] + ', "sub": "mallory"}'
    token = jwt.api_jws.encode(body.encode(), SECRET, algorithm="HS256", headers={"kid": service.keys.active.kid})
    assert refusal(service, token).detail == "Token payload is not valid JSON with unique member names"


def test_lifetimes_are_bounded_per_type(service):
    now = int(time.time())
    access_limit = 15 * 60  # the default access_lifetime, leeway 0
    assert service.verify(forge(service, iat=now, nbf=now, exp=now + access_limit))["sub"] == "alice"
    too_long = forge(service, iat=now, nbf=now, exp=now + access_limit + 1)
    assert refusal(service, too_long).detail == "Token lifetime exceeds what the gateway issues"
    refresh_limit = 14 * 86400
    pair = service.mint_pair("alice", {})
    refresh = {**pair.refresh_claims, "iat": now, "nbf": now}
    ok = jwt.encode({**refresh, "exp": now + refresh_limit}, SECRET, algorithm="HS256", headers={"kid": service.keys.active.kid})
    assert service.verify(ok, "refresh")["token_type"] == "refresh"
    long = jwt.encode({**refresh, "exp": now + refresh_limit + 1}, SECRET, algorithm="HS256",
                      headers={"kid": service.keys.active.kid})
    assert refusal(service, long, "refresh").detail == "Token lifetime exceeds what the gateway issues"


def test_the_lifetime_bound_includes_the_leeway():
    settings = Tokens(secret=SECRET, issuer="iss-a", audience="aud-a", leeway=30)
    service = TokenService(settings, KeyRing.from_config(settings))
    now = int(time.time())
    assert service.verify(forge(service, iat=now, nbf=now, exp=now + 15 * 60 + 30))["sub"] == "alice"
    assert refusal(service, forge(service, iat=now, nbf=now, exp=now + 15 * 60 + 31)).detail == (
        "Token lifetime exceeds what the gateway issues")


def test_minted_tokens_look_as_documented(service):
    before = int(time.time())
    pair = service.mint_pair("alice", {"roles": ["user"]})
    after = int(time.time())
    for token, claims, kind, lifetime in ((pair.access, pair.access_claims, "access", 15 * 60),
                                          (pair.refresh, pair.refresh_claims, "refresh", 14 * 86400)):
        assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": service.keys.active.kid, "typ": "JWT"}
        assert jwt.decode(token, options={"verify_signature": False}) == claims
        assert claims["token_type"] == kind and claims["iss"] == "iss-a" and claims["aud"] == "aud-a"
        assert before <= claims["iat"] == claims["nbf"] <= after and claims["exp"] == claims["iat"] + lifetime
        assert len(claims["jti"]) == 32 and int(claims["jti"], 16) >= 0  # 16 random bytes, hex
    assert pair.access_claims["fid"] == pair.refresh_claims["fid"] and len(pair.access_claims["fid"]) == 32
    assert pair.expires_in == 15 * 60
    assert service.mint_pair("alice", {}, family="fam-1").refresh_claims["fid"] == "fam-1"


def test_asymmetric_keys_mint_with_their_own_algorithm(tmp_path):
    from tests.support.jwt_tools import make_key

    key = make_key(tmp_path, "ES256", "es-1")
    settings = Tokens(issuer="iss-a", audience="aud-a", leeway=0, keys=[key.spec(active=True)])
    service = TokenService(settings, KeyRing.from_config(settings))
    pair = service.mint_pair("alice", {})
    assert jwt.get_unverified_header(pair.access) == {"alg": "ES256", "kid": "es-1", "typ": "JWT"}
    assert service.verify(pair.access)["sub"] == "alice"


def test_remembered_until_exp_plus_leeway_and_not_at_it(monkeypatch):
    settings = Tokens(secret=SECRET, issuer="iss-a", audience="aud-a", leeway=30)
    service = TokenService(settings, KeyRing.from_config(settings))
    now = int(time.time())
    token = forge(service, iat=now, nbf=now, exp=now + 10)
    first = service.verify(token)
    calls: list[object] = []

    def fresh(*args: object) -> dict:
        calls.append(args)
        raise GatewayError.unauthorized("token_expired", "Token has expired")

    monkeypatch.setattr(service, "_verify", fresh)
    monkeypatch.setattr(time, "time", lambda: now + 10 + 29.5)  # past exp, within the leeway: still remembered
    assert service.verify(token) is first and calls == []
    monkeypatch.setattr(time, "time", lambda: now + 10 + 30)  # exp + leeway: PyJWT calls this expired, so must the cache
    with pytest.raises(GatewayError):
        service.verify(token)
    assert len(calls) == 1
    monkeypatch.undo()
    fractional = forge(service, iat=now, nbf=now, exp=now + 10.75)  # PyJWT reads exp as int(exp): now + 10
    service.verify(fractional)
    monkeypatch.setattr(service, "_verify", fresh)
    monkeypatch.setattr(time, "time", lambda: now + 10 + 30.25)
    with pytest.raises(GatewayError):
        service.verify(fractional)
    assert len(calls) == 2


def test_the_verified_cache_is_bounded():
    from gateway.auth.tokens import VerifiedCache

    cache = VerifiedCache(max_entries=3)
    deadline = time.time() + 60
    for i in range(4):
        cache.put(f"t{i}", {"n": i}, deadline)
        assert len(cache._entries) <= 3
    assert cache.get("t3") == {"n": 3} and cache.get("t0") is None  # the oldest went to make room
    default = VerifiedCache()
    for i in range(10_001):
        default.put(f"t{i}", {}, deadline)
    assert len(default._entries) == 10_000 and default.get("t0") is None and default.get("t1") == {}
    assert [cache.get(x) for x in (None, 42, "unknown")] == [None, None, None]
