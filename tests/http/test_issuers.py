"""External issuers: tokens of a local identity provider whose JWKS server the tests run."""
from __future__ import annotations

import asyncio
import copy
import json
import secrets
from dataclasses import replace

import jwt
import pytest

from gateway.auth.issuers import parse_jwks
from gateway.config import ConfigError, parse_config
from tests.conftest import base_config, bearer, login
from tests.support.jwt_tools import JwksServer, idp_claims, make_key, raw_token, sign

IDP = "https://idp.test/realms/main"
AUD = "gateway-api"


@pytest.fixture
def idp_keys(tmp_path):
    return {"rsa": make_key(tmp_path, "RS256", "rsa-1"), "ec": make_key(tmp_path, "ES256", "ec-1"),
            "rsa2": make_key(tmp_path, "RS256", "rsa-2")}


@pytest.fixture
async def idp(aiohttp_server, idp_keys):
    jwks = JwksServer([idp_keys["rsa"].public_jwk(), idp_keys["ec"].public_jwk()])
    server = await aiohttp_server(jwks.app())
    jwks.url = str(server.make_url("/jwks"))  # type: ignore[attr-defined]
    jwks.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return jwks


def issuer_config(idp: JwksServer, upstream: str, **issuer: object) -> dict:
    settings = {
        "issuer": IDP, "audience": AUD, "jwks_url": idp.url, "algorithms": ["RS256", "ES256"],  # type: ignore[attr-defined]
        "claims": {"roles": "realm_access.roles", "email": "email", "tenant": "https://example.com/tenant"},
        "jwks_min_ttl": "0.2s", "kid_refetch_interval": "1s", "fetch_timeout": "2s", **issuer,
    }
    routes = [
        {"name": "mixed", "prefix": "/mixed", "upstream": upstream, "issuers": ["gateway", "idp"],
         "headers": {"X-User-Id": "sub", "X-User-Roles": "roles", "X-User-Email": "email", "X-User-Tenant": "tenant",
                     "X-User-Secret": "secret"}},
        {"name": "idp-only", "prefix": "/idp", "upstream": upstream, "issuers": ["idp"],
         "require": {"roles_any": ["reader"]}, "headers": {"X-User-Id": "sub"}},
        {"name": "own", "prefix": "/own", "upstream": upstream, "headers": {"X-User-Id": "sub"}},
    ]
    return {"external_issuers": {"idp": settings}, "routes": routes}


@pytest.fixture
async def ext_gateway(make_gateway, idp, upstream):
    gateway = await make_gateway(**issuer_config(idp, upstream))
    return gateway


def token(key, **extra):
    claims = idp_claims(IDP, AUD, realm_access={"roles": ["reader"]}, email="ext@example.com",
                        secret="not-mapped", **{"https://example.com/tenant": "acme"})
    claims.update(extra)
    return sign(key, claims)


async def test_external_token_is_accepted_and_its_claims_mapped(ext_gateway, idp_keys):
    for key in (idp_keys["rsa"], idp_keys["ec"]):
        resp = await ext_gateway.get("/mixed/x", headers=bearer(token(key)))
        assert resp.status == 200, await resp.text()
        headers = (await resp.json())["headers"]
        assert headers["X-User-Id"] == "idp:ext-user" and headers["X-User-Roles"] == "reader"
        assert headers["X-User-Email"] == "ext@example.com" and headers["X-User-Tenant"] == "acme"
        assert "X-User-Secret" not in headers  # only mapped claims pass
    resp = await ext_gateway.get("/idp/x", headers=bearer(token(idp_keys["rsa"])))
    assert resp.status == 200


async def test_subjects_of_other_issuers_never_pass_for_local_users(make_gateway, idp, upstream, idp_keys):
    """An IdP's alice is idp:alice upstream, never the local alice; the prefix is configurable, "" turns it off."""
    gateway = await make_gateway(**issuer_config(idp, upstream))
    resp = await gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"], sub="alice")))
    assert (await resp.json())["headers"]["X-User-Id"] == "idp:alice"
    resp = await gateway.get("/mixed/x", headers=bearer((await login(gateway))["access"]))
    assert (await resp.json())["headers"]["X-User-Id"] == "alice"
    for prefix, expected in (("corp/", "corp/alice"), ("", "alice")):
        gateway = await make_gateway(**issuer_config(idp, upstream, subject_prefix=prefix))
        resp = await gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"], sub="alice")))
        assert (await resp.json())["headers"]["X-User-Id"] == expected


async def test_a_top_level_dotted_claim_never_shadows_the_nested_path(ext_gateway, idp_keys):
    forged = token(idp_keys["rsa"], realm_access={"roles": ["reader"]}, **{"realm_access.roles": ["admin"]})
    resp = await ext_gateway.get("/mixed/x", headers=bearer(forged))
    assert (await resp.json())["headers"]["X-User-Roles"] == "reader"
    only_top = token(idp_keys["rsa"], realm_access={}, **{"realm_access.roles": ["reader"]})
    resp = await ext_gateway.get("/idp/x", headers=bearer(only_top))
    assert resp.status == 403  # the nested path is empty: no roles at all


async def test_a_lone_surrogate_in_a_claim_is_no_server_error(ext_gateway, idp_keys):
    resp = await ext_gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"], email="\ud800@x", sub="\udfff")))
    assert resp.status == 200
    headers = (await resp.json())["headers"]
    assert headers["X-User-Email"] == "%EF%BF%BD@x" and headers["X-User-Id"] == "idp:%EF%BF%BD"


async def test_route_decides_which_issuers_it_trusts(ext_gateway, idp_keys):
    own = await login(ext_gateway)
    external = token(idp_keys["rsa"])
    assert (await ext_gateway.get("/mixed/x", headers=bearer(own["access"]))).status == 200
    assert (await ext_gateway.get("/own/x", headers=bearer(own["access"]))).status == 200
    for path, tok in (("/own/x", external), ("/idp/x", own["access"])):
        resp = await ext_gateway.get(path, headers=bearer(tok))
        assert resp.status == 401, path
    # the gateway's own endpoints only ever accept the gateway's tokens
    assert (await ext_gateway.get("/auth/me", headers=bearer(external))).status == 401
    # policy still applies to external claims
    resp = await ext_gateway.get("/idp/x", headers=bearer(token(idp_keys["rsa"], realm_access={"roles": ["guest"]})))
    assert resp.status == 403


async def test_external_tokens_that_must_fail(ext_gateway, idp_keys, tmp_path):
    rsa, ec = idp_keys["rsa"], idp_keys["ec"]
    stranger = make_key(tmp_path / "stranger", "RS256", "rsa-1", material="stranger")
    es256 = jwt.encode(idp_claims(IDP, AUD), ec.private_key, algorithm="ES256", headers={"kid": "ec-1"})
    confusion = jwt.api_jws.PyJWS()
    confusion._algorithms["HS256"].prepare_key = lambda key: key  # type: ignore[attr-defined]  # PyJWT refuses PEM secrets
    hs_with_public_pem = confusion.encode(json.dumps(idp_claims(IDP, AUD)).encode(), rsa.public_pem, algorithm="HS256",
                                          headers={"kid": "rsa-1"})
    cases = {
        "wrong audience": token(rsa, aud="someone-else"),
        "wrong issuer": token(rsa, iss="https://evil.test"),
        "expired": token(rsa, exp=1000, iat=500),
        "too long-lived": token(rsa, exp=idp_claims(IDP, AUD)["iat"] + 10 * 86400),
        "no subject": sign(rsa, {k: v for k, v in idp_claims(IDP, AUD).items() if k != "sub"}),
        "empty subject": token(rsa, sub=""),
        "other key, same kid": sign(stranger, idp_claims(IDP, AUD)),
        "ES256 token naming the RSA kid": es256.replace(es256.split(".")[0], jwt.utils.base64url_encode(
            json.dumps({"alg": "ES256", "kid": "rsa-1", "typ": "JWT"}).encode()).decode()),
        "HS256 keyed with the RSA public key": hs_with_public_pem,
        "exp as a string": token(rsa, exp=str(idp_claims(IDP, AUD)["exp"])),
        "alg none": raw_token({"alg": "none", "kid": "rsa-1"}, idp_claims(IDP, AUD), b""),
    }
    for name, tok in cases.items():
        resp = await ext_gateway.get("/mixed/x", headers=bearer(tok))
        assert resp.status == 401, (name, resp.status, await resp.text())
        body = await resp.json()
        assert set(body) == {"detail", "code"} and body["code"] in {"token_not_valid", "token_expired"}, name


async def test_algorithm_outside_the_allow_list_is_refused(make_gateway, idp, upstream, idp_keys):
    gateway = await make_gateway(**issuer_config(idp, upstream, algorithms=["ES256"]))
    resp = await gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"])))
    assert resp.status == 401 and "not accepted" in (await resp.json())["detail"]
    assert (await gateway.get("/mixed/x", headers=bearer(token(idp_keys["ec"])))).status == 200


async def test_unknown_kids_cannot_hammer_the_idp(make_gateway, idp, upstream, idp_keys):
    ext_gateway = await make_gateway(**issuer_config(idp, upstream, kid_refetch_interval="5s"))
    assert (await ext_gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"])))).status == 200
    before = idp.requests
    rsa = idp_keys["rsa"]
    random_kid_tokens = [sign(replace(rsa, kid=secrets.token_hex(8)), idp_claims(IDP, AUD)) for _ in range(40)]
    answers = await asyncio.gather(*[ext_gateway.get("/mixed/x", headers=bearer(t)) for t in random_kid_tokens])
    assert all(r.status == 401 for r in answers)
    assert idp.requests - before <= 1
    for tok in random_kid_tokens[:10]:  # sequential, still within the interval
        assert (await ext_gateway.get("/mixed/x", headers=bearer(tok))).status == 401
    assert idp.requests - before <= 1


async def test_a_new_idp_key_is_picked_up_by_its_kid(ext_gateway, idp, idp_keys):
    new = idp_keys["rsa2"]
    assert (await ext_gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"])))).status == 200
    idp.keys = [new.public_jwk()]  # the IdP rotates
    await asyncio.sleep(1.1)  # past kid_refetch_interval since the last fetch
    resp = await ext_gateway.get("/mixed/x", headers=bearer(token(new)))
    assert resp.status == 200, await resp.text()


async def test_last_good_keys_survive_an_idp_outage(ext_gateway, idp, idp_keys):
    assert (await ext_gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"])))).status == 200
    idp.failing = True
    await asyncio.sleep(1.1)
    unknown = make_key(idp_keys["rsa"].private_path.parent / "x", "RS256", "brand-new")
    resp = await ext_gateway.get("/mixed/x", headers=bearer(token(unknown)))
    assert resp.status == 401  # a refetch was tried and failed; the known keys are still there
    assert (await ext_gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"])))).status == 200
    assert (await ext_gateway.get("/mixed/x", headers=bearer(token(idp_keys["ec"])))).status == 200


async def test_idp_down_from_the_start_is_a_503(make_gateway, idp, upstream, idp_keys):
    idp.failing = True
    gateway = await make_gateway(**issuer_config(idp, upstream))
    resp = await gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"])))
    assert resp.status == 503 and (await resp.json())["code"] == "issuer_unavailable"
    assert "Retry-After" in resp.headers
    own = await login(gateway)  # the gateway's own tokens do not depend on the IdP
    assert (await gateway.get("/mixed/x", headers=bearer(own["access"]))).status == 200
    idp.failing = False
    await asyncio.sleep(1.1)
    assert (await gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"])))).status == 200


async def test_keys_are_refreshed_in_the_background_by_max_age(make_gateway, idp, upstream):
    idp.max_age = 0  # clamped up to jwks_min_ttl (0.2s)
    await make_gateway(**issuer_config(idp, upstream))
    for _ in range(50):  # bounded: at most 5 s
        if idp.requests >= 3:
            break
        await asyncio.sleep(0.1)
    assert idp.requests >= 3


async def test_a_long_max_age_is_respected(make_gateway, idp, upstream, idp_keys):
    idp.max_age = 3600
    gateway = await make_gateway(**issuer_config(idp, upstream))
    for _ in range(5):
        assert (await gateway.get("/mixed/x", headers=bearer(token(idp_keys["rsa"])))).status == 200
    await asyncio.sleep(0.5)
    assert idp.requests == 1


async def test_key_url_headers_are_never_followed(ext_gateway, idp, idp_keys):
    base = idp.base  # type: ignore[attr-defined]
    rsa = idp_keys["rsa"]
    for param, value in (("jku", f"{base}/evil-jku"), ("x5u", f"{base}/evil-x5u"), ("jwk", rsa.public_jwk()),
                         ("x5c", ["MIIB"])):
        tok = sign(rsa, idp_claims(IDP, AUD), **{param: value})
        resp = await ext_gateway.get("/mixed/x", headers=bearer(tok))
        assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"
    await asyncio.sleep(0.2)
    assert not [hit for hit in idp.hits if hit.startswith("/evil")]


def test_parse_jwks_keeps_only_usable_signing_keys(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_mod
    from jwt.algorithms import RSAAlgorithm

    good = make_key(tmp_path, "RS256", "good").public_jwk()
    small = RSAAlgorithm.to_jwk(rsa_mod.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
                                as_dict=True)
    body = json.dumps({"keys": [
        good,
        {**good, "kid": "enc", "use": "enc"},
        {**good, "kid": "ps", "alg": "PS256"},
        {**good, "kid": None},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {**small, "kid": "small"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not a key",
    ]}).encode()
    assert set(parse_jwks(body, ("RS256",))) == {"good"}
    for bad in (b"[]", b"{}", b'{"keys": [{"kty": "oct", "kid": "h", "k": "eA"}]}', b"\xff"):
        with pytest.raises(ValueError):
            parse_jwks(bad, ("RS256",))


def test_issuer_config_errors(users_file, tmp_path):
    def problems(**overrides):
        raw = base_config("http://127.0.0.1:1", users_file, **overrides)
        with pytest.raises(ConfigError) as info:
            parse_config(copy.deepcopy(raw), tmp_path)
        return "\n".join(info.value.problems)

    ok = {"issuer": IDP, "audience": AUD, "jwks_url": "https://idp.test/jwks"}
    route = {"name": "r", "prefix": "/r", "upstream": "http://127.0.0.1:1"}
    assert "unknown issuers ['nope']" in problems(routes=[{**route, "issuers": ["nope"]}])
    assert "'gateway' is the gateway itself" in problems(external_issuers={"gateway": ok})
    assert "equals tokens.issuer" in problems(external_issuers={"idp": {**ok, "issuer": "test-gw"}})
    assert "must be https" in problems(external_issuers={"idp": {**ok, "jwks_url": "http://idp.test/jwks"}})
    assert "algorithms" in problems(external_issuers={"idp": {**ok, "algorithms": ["HS256"]}})
    assert "algorithms" in problems(external_issuers={"idp": {**ok, "algorithms": ["none"]}})
    assert "set from the verified token" in problems(external_issuers={"idp": {**ok, "claims": {"exp": "x"}}})
    assert "issuers: list at least one" in problems(routes=[{**route, "issuers": []}])
    parse_config(base_config("http://127.0.0.1:1", users_file,
                             external_issuers={"idp": {**ok, "jwks_url": "http://idp.internal/jwks", "allow_http": True}}),
                 tmp_path)


async def test_a_replaced_runtime_needs_no_cleanup(idp, upstream, users_file, tmp_path, idp_keys):
    """A reload drops the old runtime without closing it: its refresher ends by itself, nothing leaks."""
    import gc
    import weakref

    from gateway.auth.issuers import _BACKGROUND, Issuers

    idp.max_age = 1  # the refresher sleeps one TTL between rounds
    config = parse_config(copy.deepcopy(base_config(upstream, users_file, **issuer_config(idp, upstream))), tmp_path)
    issuers = Issuers(config)
    route = config.routes[0]
    claims = await issuers.for_route(route).external[IDP].verify(token(idp_keys["ec"]))  # starts lazily
    assert claims["sub"] == "idp:ext-user"
    cache = weakref.ref(issuers.by_name["idp"].jwks)
    refresher = issuers.by_name["idp"].jwks._refresher
    assert refresher in _BACKGROUND and not refresher.done()
    await asyncio.sleep(0.1)  # let the refresher reach its sleep (it holds the cache only during a fetch)
    del issuers, claims
    gc.collect()
    assert cache() is None
    for _ in range(40):  # bounded: at most ~4 s
        if refresher.done():
            break
        await asyncio.sleep(0.1)
    else:
        refresher.cancel()
    assert refresher.done()
