"""Who is calling (gateway/auth/credentials.py) on request objects: bearer header, cookie fallback, which verifier.

tests/http/test_proxy.py, test_cookies.py and test_issuers.py show the same through a real gateway; these pin
each branch with its answer.
"""
from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.auth.cookies import CookieMode
from gateway.auth.credentials import authenticate, bearer_token, verify_access, verify_for_route, verify_trusted
from gateway.auth.issuers import ExternalVerifier, RouteTrust
from gateway.auth.keys import KeyRing
from gateway.auth.tokens import TokenService
from gateway.config import ExternalIssuer, Tokens
from gateway.config.browser import Cookies
from gateway.errors import GatewayError
from gateway.stores import MemoryStore
from tests.conftest import SECRET
from tests.support.jwt_tools import make_key, raw_token, sign

SETTINGS = Tokens(secret=SECRET, issuer="gw", audience="clients", leeway=0)
TOKENS = TokenService(SETTINGS, KeyRing.from_config(SETTINGS))


def request(headers: list[tuple[str, str]] = (), method: str = "GET") -> web.Request:  # type: ignore[assignment]
    return make_mocked_request(method, "/api/x", headers=CIMultiDict(headers))


async def refusal(coro: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await coro
    return info.value


def test_bearer_token():
    assert bearer_token(request()) is None
    assert bearer_token(request([("Authorization", "Bearer abc")])) == "abc"
    assert bearer_token(request([("Authorization", "  bEaReR   abc  ")])) == "abc"
    assert bearer_token(request([("Authorization", "Basic abc")])) is None
    assert bearer_token(request([("Authorization", "Bearerabc")])) is None
    for value in ("Bearer", "Bearer   "):
        with pytest.raises(GatewayError) as info:
            bearer_token(request([("Authorization", value)]))
        assert (info.value.status, info.value.code, info.value.detail) == (401, "token_not_valid", "The bearer token is empty")
    with pytest.raises(GatewayError) as info:
        bearer_token(request([("Authorization", "Bearer a"), ("Authorization", "Basic b")]))
    assert (info.value.status, info.value.detail) == (400, "More than one Authorization header")



async def known(store: MemoryStore, pair: Any) -> Any:
    """``pair`` with its family started in ``store``, as a login leaves it (a family the store does not know is
    refused: the store lost its data, or never issued it)."""
    await store.start_family(pair.access_claims["fid"], pair.refresh_claims["jti"], 600)
    return pair

async def test_revoked_access_tokens_are_refused():
    store = MemoryStore()
    pair = await known(store, TOKENS.mint_pair("alice", {}))
    assert (await verify_access(pair.access, TOKENS, store))["sub"] == "alice"
    await store.deny(pair.access_claims["fid"], pair.access_claims["jti"], ttl=60)
    error = await refusal(verify_access(pair.access, TOKENS, store))
    assert (error.status, error.code, error.detail) == (401, "token_revoked", "Token has been revoked")
    other = TOKENS.mint_pair("alice", {}, family=pair.access_claims["fid"])  # same family, another jti: not denied
    assert (await verify_access(other.access, TOKENS, store))["sub"] == "alice"
    await store.revoke_family(pair.access_claims["fid"], ttl=60)
    assert (await refusal(verify_access(other.access, TOKENS, store))).code == "token_revoked"


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    key = make_key(tmp_path_factory.mktemp("idp"), "ES256", "idp-es")
    verifier = ExternalVerifier("idp", ExternalIssuer(issuer="https://idp.test", audience="gw", jwks_url="https://idp.test/jwks",
                                                      algorithms=["ES256"]))
    verifier.jwks.keys = MappingProxyType({"idp-es": {"ES256": key.private_key.public_key()}})
    verifier.jwks._last_attempt = verifier.jwks._fetched_at = time.monotonic()
    verifier.jwks._ttl = 1e9
    now = int(time.time())
    token = sign(key, {"iss": "https://idp.test", "aud": "gw", "sub": "ext", "iat": now, "exp": now + 60})
    return verifier, token


async def test_which_verifier_a_route_uses(idp):
    verifier, external = idp
    store = MemoryStore()
    own = (await known(store, TOKENS.mint_pair("alice", {}))).access
    both = RouteTrust(True, MappingProxyType({"https://idp.test": verifier}))
    only_idp = RouteTrust(False, MappingProxyType({"https://idp.test": verifier}))
    only_own = RouteTrust(True, MappingProxyType({}))
    nobody = RouteTrust(False, MappingProxyType({}))
    assert (await verify_for_route(own, TOKENS, store, None))["sub"] == "alice"
    assert (await verify_for_route(own, TOKENS, store, only_own))["sub"] == "alice"
    assert (await verify_for_route(own, TOKENS, store, both))["sub"] == "alice"
    assert (await verify_for_route(external, TOKENS, store, both))["sub"] == "idp:ext"
    assert (await verify_for_route(external, TOKENS, store, only_idp))["sub"] == "idp:ext"
    not_here = "Tokens of this issuer are not accepted here"
    assert (await refusal(verify_for_route(own, TOKENS, store, only_idp))).detail == not_here
    assert (await refusal(verify_for_route(own, TOKENS, store, nobody))).detail == not_here
    assert (await refusal(verify_for_route(external, TOKENS, store, None))).detail == "Token is signed with an unknown key"
    assert (await refusal(verify_for_route(external, TOKENS, store, only_own))).detail == "Token is signed with an unknown key"


async def test_the_issuer_only_picks_the_keys(idp, tmp_path):
    verifier, _ = idp
    store = MemoryStore()
    both = RouteTrust(True, MappingProxyType({"https://idp.test": verifier}))
    now = int(time.time())
    # the gateway's issuer on a token signed by the IdP's key: the gateway's keys verify it, and refuse it
    claims = {"iss": "gw", "aud": "clients", "sub": "x", "iat": now, "nbf": now, "exp": now + 60, "jti": "j", "fid": "f",
              "token_type": "access"}
    idp_key = make_key(tmp_path, "ES256", "idp-es")
    assert (await refusal(verify_trusted(sign(idp_key, claims), both, TOKENS, store))).code == "token_not_valid"
    for payload in ({"aud": "gw"}, {"iss": 7}, {"iss": ["https://idp.test"]}, {"iss": "https://other.test"}, {"iss": None}):
        token = raw_token({"alg": "ES256", "kid": "idp-es"}, {**payload, "sub": "s", "exp": now + 60}, b"sig")
        error = await refusal(verify_trusted(token, both, TOKENS, store))
        assert (error.status, error.detail) == (401, "Tokens of this issuer are not accepted here"), payload
    error = await refusal(verify_trusted("a.b", both, TOKENS, store))
    assert (error.status, error.code, error.detail) == (401, "token_not_valid", "Token is malformed")
    assert (await verify_trusted((await known(store, TOKENS.mint_pair("bob", {}))).access, both, TOKENS, store))["sub"] == "bob"


def cookie_mode() -> CookieMode:
    return CookieMode(Cookies(), SECRET.encode(), 3600)


async def test_authenticate_bearer_first_then_the_cookie():
    store = MemoryStore()
    cookies = cookie_mode()
    alice, bob = await known(store, TOKENS.mint_pair("alice", {})), await known(store, TOKENS.mint_pair("bob", {}))
    both = [("Authorization", f"Bearer {alice.access}"), ("Cookie", f"gw_access={bob.access}")]
    assert (await authenticate(request(both), TOKENS, store, required=True, cookies=cookies))["sub"] == "alice"
    by_cookie = request([("Cookie", f"gw_access={bob.access}")])
    assert (await authenticate(by_cookie, TOKENS, store, required=True, cookies=cookies))["sub"] == "bob"
    assert await authenticate(by_cookie, TOKENS, store, required=False) is None  # no cookie mode: cookies mean nothing
    own = RouteTrust(True, MappingProxyType({}))
    assert (await authenticate(by_cookie, TOKENS, store, required=True, trust=own, cookies=cookies))["sub"] == "bob"
    external_only = RouteTrust(False, MappingProxyType({}))
    error = await refusal(authenticate(by_cookie, TOKENS, store, required=True, trust=external_only, cookies=cookies))
    assert error.code == "authentication_required"  # the cookie only ever holds the gateway's own token


async def test_a_cookie_authenticated_write_needs_the_csrf_token():
    store = MemoryStore()
    cookies = cookie_mode()
    pair = await known(store, TOKENS.mint_pair("bob", {}))
    post = request([("Cookie", f"gw_access={pair.access}")], method="POST")
    error = await refusal(authenticate(post, TOKENS, store, required=True, cookies=cookies))
    assert (error.status, error.code) == (403, "csrf_failed")
    csrf = cookies.csrf_token(pair.access_claims["fid"])
    signed = request([("Cookie", f"gw_access={pair.access}; gw_csrf={csrf}"), ("X-CSRF-Token", csrf)], method="POST")
    assert (await authenticate(signed, TOKENS, store, required=True, cookies=cookies))["sub"] == "bob"
    bearer_post = request([("Authorization", f"Bearer {pair.access}")], method="POST")
    assert (await authenticate(bearer_post, TOKENS, store, required=True, cookies=cookies))["sub"] == "bob"
    await store.deny(pair.access_claims["fid"], pair.access_claims["jti"], ttl=60)
    error = await refusal(authenticate(signed, TOKENS, store, required=True, cookies=cookies))
    assert error.code == "token_revoked"


async def test_no_credentials():
    store = MemoryStore()
    assert await authenticate(request(), TOKENS, store, required=False, cookies=cookie_mode()) is None
    error = await refusal(authenticate(request(), TOKENS, store, required=True, cookies=cookie_mode()))
    assert (error.status, error.code, error.detail) == (401, "authentication_required", "Authentication credentials were not provided")
    assert error.token_presented is False
    empty_cookie = request([("Cookie", "gw_access=")])
    assert await authenticate(empty_cookie, TOKENS, store, required=False, cookies=cookie_mode()) is None
    bad = await refusal(authenticate(request([("Authorization", "Bearer x.y.z")]), TOKENS, store, required=False))
    assert bad.code == "token_not_valid" and bad.token_presented is True  # a bad token is never anonymous
