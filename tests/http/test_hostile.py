"""Attacks on tokens, logins and headers: each answered with the right 4xx, nothing leaked, nothing crashed.

The last part throws random bytes and random structures (Hypothesis) at token
parsing and at the token endpoints of a real gateway on a real socket.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.auth.keys import KeyRing, hmac_kid
from gateway.auth.tokens import TokenService
from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.example_upstream import create_upstream
from gateway.sources.users import hash_password
from tests.conftest import SECRET, base_config, bearer, free_port, login
from tests.support.jwt_tools import JwksServer, b64, make_key, raw_token, sign

HS_KID = hmac_kid(SECRET.encode())
HYPOTHESIS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hs256(header: str | dict, payload: str | dict, secret: str = SECRET) -> str:
    """A correctly signed HS256 token whose header and payload are exactly the given JSON text."""
    head = b64(header if isinstance(header, str) else json.dumps(header))
    body = b64(payload if isinstance(payload, str) else json.dumps(payload))
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def assert_refused(resp, status: int = 401, code: str | None = "token_not_valid") -> dict:
    body_text = await resp.text()
    assert resp.status == status, body_text
    body = json.loads(body_text)
    assert set(body) == {"detail", "code"} and "Traceback" not in body_text
    if code:
        assert body["code"] == code, body
    return body


# -- algorithm confusion, alg none, crit, key-fetching headers ----------------------


async def test_hs256_signed_with_the_rsa_public_key_is_refused(make_gateway, tmp_path):
    rsa = make_key(tmp_path, "RS256", "rsa")
    gateway = await make_gateway(tokens={"secret": None, "keys": [rsa.spec(active=True)]})
    claims = claims_of((await login(gateway))["access"])
    for public in (rsa.public_pem, rsa.public_pem.strip(), json.dumps(rsa.public_jwk()).encode()):
        head = b64(json.dumps({"alg": "HS256", "kid": "rsa", "typ": "JWT"}))
        body = b64(json.dumps(claims))
        sig = b64(hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest())
        resp = await gateway.get("/api/x", headers=bearer(f"{head}.{body}.{sig}"))
        detail = (await assert_refused(resp))["detail"]
        assert detail == "Token algorithm does not match its key"


async def test_asymmetric_alg_on_the_hmac_key_is_refused(gateway):
    claims = claims_of((await login(gateway))["access"])
    for alg in ("RS256", "ES256", "EdDSA", "PS256", "HS512", "hs256"):
        resp = await gateway.get("/api/x", headers=bearer(raw_token({"alg": alg, "kid": HS_KID}, claims)))
        await assert_refused(resp)


ALG_NONE = ["none", "None", "NONE", "nOnE", "NoNe", "nONE", " none", "none "]


@pytest.mark.parametrize("alg", ALG_NONE)
async def test_alg_none_in_every_casing(gateway, alg):
    claims = claims_of((await login(gateway))["access"])
    for kid in (HS_KID, None):
        header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
        for signature in (b"", b"x"):
            token = raw_token(header, claims, signature)
            await assert_refused(await gateway.get("/api/x", headers=bearer(token)))
            await assert_refused(await gateway.post("/auth/token/verify", json={"token": token}))


@pytest.mark.parametrize("param,value", [
    ("crit", ["exp"]), ("crit", []), ("crit", ["b64"]), ("b64", False), ("b64", True),
    ("jku", "http://127.0.0.1:1/jwks"), ("x5u", "http://127.0.0.1:1/cert"), ("x5c", ["MIIB"]),
    ("jwk", {"kty": "oct", "k": "c2VjcmV0"}),
])
async def test_dangerous_header_parameters_are_refused_even_when_signed(gateway, param, value):
    claims = claims_of((await login(gateway))["access"])
    token = hs256({"alg": "HS256", "kid": HS_KID, "typ": "JWT", param: value}, claims)
    body = await assert_refused(await gateway.get("/api/x", headers=bearer(token)))
    assert body["detail"] == "Token header uses a parameter the gateway does not accept"


async def test_key_urls_in_tokens_are_never_fetched(gateway, aiohttp_server, tmp_path):
    attacker_key = make_key(tmp_path, "RS256", "attacker")
    attacker = JwksServer([attacker_key.public_jwk()])
    server = await aiohttp_server(attacker.app())
    base = str(server.make_url("")).rstrip("/")
    claims = claims_of((await login(gateway))["access"])
    forged = [
        sign(attacker_key, claims, jku=f"{base}/jwks"),
        sign(attacker_key, claims, x5u=f"{base}/cert.pem"),
        sign(attacker_key, claims, jwk=attacker_key.public_jwk()),
        sign(attacker_key, claims, kid=HS_KID, jku=f"{base}/jwks"),
        hs256({"alg": "HS256", "kid": HS_KID, "jku": f"{base}/jwks"}, claims),
    ]
    for token in forged:
        await assert_refused(await gateway.get("/api/x", headers=bearer(token)))
        await assert_refused(await gateway.post("/auth/token/refresh", json={"refresh": token}))
        await assert_refused(await gateway.get("/auth/me", headers=bearer(token)))
    await asyncio.sleep(0.2)
    assert attacker.hits == []


# -- malformed and oversized tokens -------------------------------------------------


def _malformed_tokens(claims: dict[str, Any]) -> dict[str, str]:
    header = {"alg": "HS256", "kid": HS_KID, "typ": "JWT"}
    signed = hs256(header, claims)
    h, p, s = signed.split(".")
    deep = "[" * 2500 + "]" * 2500  # beyond Python's JSON recursion limit, within MAX_TOKEN_LENGTH
    deep_value = json.dumps(header)[:-1] + ', "x": ' + deep + "}"
    return {
        "two segments": f"{h}.{p}",
        "four segments": f"{signed}.{s}",
        "empty header": f".{p}.{s}",
        "empty payload": f"{h}..{s}",
        "padding": f"{h}=.{p}.{s}",
        "standard base64": signed.replace("-", "+").replace("_", "/") + "+/",
        "spaces": f"{h}. {p}.{s}",
        "non-JSON header": f"{b64('not json')}.{p}.{s}",
        "non-UTF-8 header": f"{b64(bytes([0xff, 0xfe]))}.{p}.{s}",
        "header is a list": f"{b64('[1, 2]')}.{p}.{s}",
        "header is a string": f"{b64(json.dumps('alg'))}.{p}.{s}",
        "deeply nested header": f"{b64(deep)}.{p}.{s}",
        "deeply nested header value": f"{b64(deep_value)}.{p}.{s}",
        "base64 of wrong length": f"{h}.{p}x.{s}",
        "signed non-JSON payload": hs256(header, "not json"),
        "signed list payload": hs256(header, "[1, 2, 3]"),
        "signed string payload": hs256(header, json.dumps(signed)),
        "signed number payload": hs256(header, "42"),
        "signed null payload": hs256(header, "null"),
        "signed nested JWT (cty)": hs256({**header, "cty": "JWT"}, claims),
        "signed nested JWT (payload)": hs256(header, signed),
        "signed deeply nested payload": hs256(header, json.dumps({**claims, "x": None})[:-1].replace("null", deep) + "}"),
        "oversized": hs256(header, {**claims, "pad": "x" * 9000}),
        "unicode": signed + "é",
        "NUL": signed.replace(".", "\x00.", 1),
    }


async def test_malformed_tokens_are_refused_everywhere(gateway):
    claims = claims_of((await login(gateway))["access"])
    for name, token in _malformed_tokens(claims).items():
        answers = [await gateway.post("/auth/token/verify", json={"token": token}),
                   await gateway.post("/auth/token/refresh", json={"refresh": token})]
        for resp in answers:
            await assert_refused(resp)
        if token.isascii() and "\x00" not in token:
            resp = await gateway.get("/api/x", headers=bearer(token))
            if len(token) > 8100:  # beyond aiohttp's header line limit: its own plain-text 400
                assert resp.status == 400 and "Traceback" not in await resp.text(), name
            else:
                await assert_refused(resp)


async def test_an_oversized_authorization_header_is_a_4xx(gateway):
    resp = await gateway.get("/api/x", headers=bearer("a" * 100_000))
    assert 400 <= resp.status < 500 and "Traceback" not in await resp.text()


# -- claims that lie about their type ----------------------------------------------


@pytest.mark.parametrize("claim,value", [
    ("exp", "9999999999"), ("exp", "1e12"), ("iat", "0"), ("nbf", "0"), ("exp", True), ("exp", [9999999999]),
    ("exp", {"value": 9999999999}), ("exp", None), ("exp", 1e400), ("iat", -1e400), ("sub", 42), ("sub", ["alice"]),
    ("aud", 42), ("aud", {"aud": "test-clients"}), ("iss", ["test-gw"]), ("jti", 7), ("fid", 7), ("fid", None),
])
async def test_claims_of_the_wrong_type_are_refused(gateway, claim, value):
    claims = claims_of((await login(gateway))["access"])
    claims[claim] = value
    payload = json.dumps(claims)  # 1e400 serialises as Infinity: JSON that Python (and PyJWT) would accept
    token = hs256({"alg": "HS256", "kid": HS_KID, "typ": "JWT"}, payload)
    await assert_refused(await gateway.get("/api/x", headers=bearer(token)), code=None)


async def test_duplicate_json_members_are_refused(gateway):
    claims = claims_of((await login(gateway))["access"])
    body = json.dumps(claims)[:-1]
    header_ok = json.dumps({"alg": "HS256", "kid": HS_KID, "typ": "JWT"})
    cases = {
        "header alg twice": '{"alg": "none", "alg": "HS256", "kid": "%s"}' % HS_KID,
        "header kid twice": '{"alg": "HS256", "kid": "other", "kid": "%s"}' % HS_KID,
    }
    for header in cases.values():
        await assert_refused(await gateway.get("/api/x", headers=bearer(hs256(header, json.dumps(claims)))))
    payloads = {
        "sub twice": body + ', "sub": "alice"}',
        "roles twice": body + ', "roles": ["admin"]}',
        "exp twice": body.replace('"exp":', '"exp": 1, "exp":') + "}",
        "token_type twice": body + ', "token_type": "access"}',
    }
    for name, payload in payloads.items():
        resp = await gateway.get("/api/x", headers=bearer(hs256(header_ok, payload)))
        detail = (await assert_refused(resp))["detail"]
        assert "unique member names" in detail, name


async def test_tokens_of_another_type_are_refused(gateway):
    pair = await login(gateway)
    access, refresh = claims_of(pair["access"]), claims_of(pair["refresh"])
    header = {"alg": "HS256", "kid": HS_KID, "typ": "JWT"}
    for token_type in ("refresh", "identity", "ACCESS", "", None, ["access"]):
        token = hs256(header, {**access, "token_type": token_type})
        await assert_refused(await gateway.get("/api/x", headers=bearer(token)))
    no_type = {k: v for k, v in access.items() if k != "token_type"}
    await assert_refused(await gateway.get("/api/x", headers=bearer(hs256(header, no_type))))
    for token_type in ("access", "identity"):
        token = hs256(header, {**refresh, "token_type": token_type})
        await assert_refused(await gateway.post("/auth/token/refresh", json={"refresh": token}))


async def test_far_future_expiry_is_refused(gateway):
    """A validly signed token that lives longer than the gateway ever issues is not trusted."""
    pair = await login(gateway)
    header = {"alg": "HS256", "kid": HS_KID, "typ": "JWT"}
    refresh = claims_of(pair["refresh"])
    forever = hs256(header, {**refresh, "exp": refresh["iat"] + 100 * 365 * 86400})
    body = await assert_refused(await gateway.post("/auth/token/refresh", json={"refresh": forever}))
    assert body["detail"] == "Token lifetime exceeds what the gateway issues"
    access = claims_of(pair["access"])
    long_access = hs256(header, {**access, "exp": access["iat"] + 901})  # access_lifetime 15m, leeway 0
    await assert_refused(await gateway.get("/api/x", headers=bearer(long_access)))
    back_dated = hs256(header, {**refresh, "iat": refresh["iat"] - 30 * 86400})
    await assert_refused(await gateway.post("/auth/token/refresh", json={"refresh": back_dated}))
    future_iat = hs256(header, {**access, "iat": access["iat"] + 3600, "exp": access["iat"] + 3600 + 60})
    await assert_refused(await gateway.get("/api/x", headers=bearer(future_iat)))
    # the untouched pair still works: the checks refused the edits, not the session
    assert (await gateway.post("/auth/token/refresh", json={"refresh": pair["refresh"]})).status == 200


# -- identities that look alike, and values that would split headers -----------------


@pytest.fixture(scope="module")
def lookalike_users(tmp_path_factory) -> Path:
    users = {
        "alice": {"password_hash": hash_password("real-alice"), "claims": {"roles": ["admin"]}},
        "\uff41lice": {"password_hash": hash_password("fullwidth"), "claims": {"roles": ["user"]}},
    }
    path = tmp_path_factory.mktemp("lookalike") / "users.yaml"
    path.write_text(yaml.safe_dump({"users": users}, allow_unicode=True), encoding="utf-8")
    return path


async def test_logins_are_compared_exactly(aiohttp_client, upstream, lookalike_users):
    raw = base_config(upstream, lookalike_users, login_throttle={"enabled": False})
    gateway = await aiohttp_client(create_app(parse_config(raw, lookalike_users.parent)))
    spoofs = ["\uff41lice", "ALICE", "Alice", "alice ", " alice", "alice\u200b", "\u202ealice", "al\u0131ce",
              "alic\u0435", "a\u0301lice", "alice\x00", "alice\n"]
    for name in spoofs:
        resp = await gateway.post("/auth/token", json={"username": name, "password": "real-alice"})
        assert resp.status == 401, name
    resp = await gateway.post("/auth/token", json={"username": "\uff41lice", "password": "fullwidth"})
    assert resp.status == 200
    fullwidth = await resp.json()
    assert claims_of(fullwidth["access"])["sub"] == "\uff41lice"
    headers = (await (await gateway.get("/api/x", headers=bearer(fullwidth["access"]))).json())["headers"]
    assert headers["X-User-Id"] == "%EF%BD%81lice" and headers["X-User-Roles"] == "user"
    resp = await gateway.get("/admin/x", headers=bearer(fullwidth["access"]))
    assert resp.status == 403  # the look-alike has none of alice's roles


async def test_crlf_in_a_claim_never_splits_a_header(make_gateway, aiohttp_server):
    seen: list[list[tuple[bytes, bytes]]] = []

    async def raw_echo(request: web.Request) -> web.Response:
        seen.append(list(request.raw_headers))
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", raw_echo)
    server = await aiohttp_server(app)
    upstream = str(server.make_url("")).rstrip("/")
    gateway = await make_gateway(routes=[{"name": "api", "prefix": "/api", "upstream": upstream,
                                          "headers": {"X-User-Id": "sub", "X-Auth-Tenant": "tenant"}}])
    body = await login(gateway, "mallory")  # her tenant claim is "evil\r\nX-Injected: 1"
    assert (await gateway.get("/api/x", headers=bearer(body["access"]))).status == 200
    names = [name.lower() for name, _ in seen[-1]]
    assert names.count(b"x-auth-tenant") == 1 and b"x-injected" not in names
    assert dict(seen[-1])[b"X-Auth-Tenant"] == b"evil%0D%0AX-Injected: 1"


# -- gigantic input on the token endpoints ------------------------------------------


async def test_gigantic_bodies_are_413(gateway):
    big = json.dumps({"username": "alice", "password": "x" * 1_000_000})
    resp = await gateway.post("/auth/token", data=big, headers={"Content-Type": "application/json"})
    await assert_refused(resp, 413, None)

    async def chunks():
        for _ in range(200):
            yield b"x" * 8192

    for path in ("/auth/token", "/auth/token/refresh", "/auth/token/verify", "/auth/logout"):
        resp = await gateway.post(path, data=chunks(), headers={"Content-Type": "application/json"})
        await assert_refused(resp, 413, None)
    form = {"username": "alice", "password": "p" * 200_000}
    await assert_refused(await gateway.post("/auth/token", data=form), 413, None)


async def test_deeply_nested_json_bodies_are_400(gateway):
    deep = '{"username": ' + "[" * 20000 + "]" * 20000 + ', "password": "x"}'
    for path in ("/auth/token", "/auth/token/refresh", "/auth/token/verify"):
        resp = await gateway.post(path, data=deep, headers={"Content-Type": "application/json"})
        await assert_refused(resp, 400, "bad_request")


def _raw_request(port: int, data: bytes) -> bytes:
    """Send bytes while reading the answer (a server that refuses early may reset before we finish)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:

        def send() -> None:
            try:
                sock.sendall(data)
            except OSError:
                pass  # refused early and closed

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        sender.join(10)
        return b"".join(chunks)


async def test_gigantic_request_headers_are_4xx(gateway):
    port = gateway.server.port
    loop = asyncio.get_running_loop()
    requests = [
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
        + b"Content-Length: 2\r\n\r\n{}",
        b"POST /auth/token" + b"/a" * 50_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /auth/token/refresh HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"t" * 70_000 + b"\r\n\r\n",
    ]
    for data in requests:
        answer = await loop.run_in_executor(None, _raw_request, port, data)
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.split(b" ")[1].startswith(b"4"), status_line
        assert b"Traceback" not in answer
    assert (await gateway.get("/healthz")).status == 200  # and the gateway is still serving


# -- property tests: random bytes and structures ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
segments = st.one_of(
    st.binary(max_size=200).map(b64),
    json_values.map(lambda v: b64(json.dumps(v))),
    st.text(alphabet="ABCxyz019-_=+/. ", max_size=40),
)
header_objects = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "cty", "crit", "jku", "b64", "zip", "x"]), json_values, max_size=5
) | st.fixed_dictionaries({"alg": st.sampled_from(["HS256", "ES256", "none", "RS256"]),
                           "kid": st.sampled_from([HS_KID, "es", "nope"])})


@pytest.fixture(scope="module")
def token_service(tmp_path_factory) -> TokenService:
    key = make_key(tmp_path_factory.mktemp("ring"), "ES256", "es")
    raw = base_config("http://127.0.0.1:1", Path("/nonexistent"),
                      tokens={"secret": None, "keys": [key.spec(active=True),
                                                       {"kid": HS_KID, "algorithm": "HS256", "secret": SECRET}]})
    config = parse_config(copy.deepcopy(raw), Path("/"))
    return TokenService(config.tokens, KeyRing.from_config(config.tokens))


def _refused_everywhere(service: TokenService, token: object) -> None:
    """Nothing signed by the gateway's keys: every kind of verification refuses it (a 401), none crashes."""
    for token_type in ("access", "refresh", None):
        with pytest.raises(GatewayError) as info:
            service.verify(token, token_type)
        assert info.value.status == 401 and info.value.code in {"token_not_valid", "token_expired"}


@HYPOTHESIS
@given(token=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                       st.tuples(segments, segments, segments).map(".".join),
                       st.lists(segments, max_size=6).map(".".join), json_values))
def test_random_input_to_token_parsing(token_service, token):
    _refused_everywhere(token_service, token)


@HYPOTHESIS
@given(header=header_objects, payload=json_values, signature=st.binary(max_size=80))
def test_random_structures_to_token_parsing(token_service, header, payload, signature):
    _refused_everywhere(token_service, raw_token(header, payload, signature))


UNDECIDED = object()  # a date within a few seconds of a limit: the clock decides, so only "no crash" is asserted


def _date(value: Any) -> bool:
    return type(value) in (int, float) and value == value and value not in (float("inf"), float("-inf"))


def _near(value: float, limit: float) -> bool:
    return abs(value - limit) <= 3


def _basic_rule_broken(claims: Any, required: tuple[str, ...], issuer: str, audience: str) -> str | None:
    """The rules every issuer shares: an object, the required claims present, the issuer, the audience (or a list of
    strings holding it)."""
    if not isinstance(claims, dict):
        return "not an object"
    for name in required:
        if claims.get(name) is None:
            return f"no {name}"
    if claims["iss"] != issuer:
        return "issuer"
    aud = claims["aud"]
    if aud != audience and not (isinstance(aud, list) and all(isinstance(a, str) for a in aud) and audience in aud):
        return "audience"
    return None


def gateway_rule_broken(claims: Any, token_type: str | None, now: float) -> Any:
    """Which rule of a gateway token ``claims`` break (a reason), None if none, or UNDECIDED.

    Written from the documented rules (docs/tokens), independently of gateway.auth: issuer test-gw, audience
    test-clients, every registered claim present, dates finite numbers, not expired, not before iat/nbf (leeway 0),
    the right type, a family, a lifetime no longer than the type's (15 min, 14 days).
    """
    basic = _basic_rule_broken(claims, ("exp", "iat", "nbf", "iss", "aud", "sub", "jti"), "test-gw", "test-clients")
    if basic is not None:
        return basic
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        return "sub or jti not text"
    if not all(_date(claims[name]) for name in ("exp", "iat", "nbf")):
        return "a date that is not a number"
    accepted = ("access", "refresh") if token_type is None else (token_type,)
    if claims.get("token_type") not in accepted:
        return "type"
    if not isinstance(claims.get("fid"), str):
        return "family"
    exp, iat, nbf = (int(claims[name]) for name in ("exp", "iat", "nbf"))
    if claims["exp"] - claims["iat"] > {"access": 15 * 60, "refresh": 14 * 86400}[claims["token_type"]]:
        return "lifetime"
    if _near(exp, now) or _near(iat, now) or _near(nbf, now):
        return UNDECIDED
    if exp <= now:
        return "expired"
    if iat > now or nbf > now:
        return "not yet valid"
    return None


def _judged(verify, expected: Any) -> None:
    """``verify()`` accepts exactly what breaks no rule; a refusal is a 401, never a crash."""
    try:
        claims = verify()
    except GatewayError as exc:
        assert exc.status == 401 and exc.code in {"token_not_valid", "token_expired"}
        assert expected is not None, f"refused ({exc.detail}) though no rule is broken"
        return
    assert expected is None or expected is UNDECIDED, f"accepted though it breaks: {expected}"
    assert isinstance(claims, dict)


@HYPOTHESIS
@given(payload=json_values | st.dictionaries(
    st.sampled_from(["iss", "aud", "sub", "exp", "iat", "nbf", "jti", "token_type", "fid", "roles"]),
    json_values | st.integers(min_value=0, max_value=2**40), max_size=10))
def test_random_payloads_with_valid_signatures(token_service, payload):
    """Signed by the real key: whatever the claims, exactly those that break no rule pass."""
    now = int(time.time())
    base = {"iss": "test-gw", "aud": "test-clients", "sub": "alice", "iat": now - 10, "nbf": now - 10, "exp": now + 60,
            "jti": "j", "fid": "f", "token_type": "access"}
    merged = {**base, **payload} if isinstance(payload, dict) else payload
    header = {"alg": "HS256", "kid": HS_KID, "typ": "JWT"}
    token = hs256(header, json.dumps(merged))
    for token_type in ("access", "refresh", None):
        _judged(lambda token_type=token_type: token_service.verify(token, token_type),
                gateway_rule_broken(merged, token_type, time.time()))


@pytest.fixture(scope="module")
def external_trust(tmp_path_factory):
    """A route trusting the gateway and one IdP whose keys are already cached (no network in the loop)."""
    from types import MappingProxyType

    from gateway.auth.issuers import ExternalVerifier, RouteTrust
    from gateway.config import ExternalIssuer

    key = make_key(tmp_path_factory.mktemp("idp"), "ES256", "idp-es")
    settings_ = ExternalIssuer(issuer="https://idp.test", audience="gw", jwks_url="https://idp.test/jwks",
                               algorithms=["ES256", "RS256"], claims={"roles": "realm.roles"})
    verifier = ExternalVerifier("idp", settings_)
    verifier.jwks.keys = MappingProxyType({"idp-es": {"ES256": key.private_key.public_key()}})
    verifier.jwks._last_attempt = verifier.jwks._fetched_at = time.monotonic()  # fresh: unknown kids won't fetch
    verifier.jwks._ttl = 1e9
    return key, RouteTrust(True, MappingProxyType({"https://idp.test": verifier}))


def _verify_trusted(service: TokenService, trust, token: str):
    from gateway.auth.credentials import verify_trusted
    from gateway.stores import MemoryStore

    return lambda: asyncio.run(verify_trusted(token, trust, service, MemoryStore()))


def idp_rule_broken(claims: Any, now: float) -> Any:
    """The IdP's rules as configured in ``external_trust`` (leeway 30 s, tokens of at most a day), written out here."""
    basic = _basic_rule_broken(claims, ("exp", "iss", "aud", "sub"), "https://idp.test", "gw")
    if basic is not None:
        return basic
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        return "subject"
    if "jti" in claims and not isinstance(claims["jti"], str):
        return "jti"
    dates = [name for name in ("exp", "iat", "nbf") if name in claims]
    if not all(_date(claims[name]) for name in dates if claims[name] is not None):
        return "a date that is not a number"
    if any(claims[name] is None for name in dates):
        return UNDECIDED  # an explicit null iat/nbf: PyJWT's business, only "no crash" is asserted
    start = claims.get("iat", now)
    if "iat" not in claims and _near(claims["exp"] - start, 86400 + 30):
        return UNDECIDED
    if claims["exp"] - start > 86400 + 30:
        return "lifetime"
    exp = int(claims["exp"])
    if _near(exp, now - 30) or any(_near(int(claims[n]), now + 30) for n in ("iat", "nbf") if n in claims):
        return UNDECIDED
    if exp <= now - 30:
        return "expired"
    if any(int(claims[n]) > now + 30 for n in ("iat", "nbf") if n in claims):
        return "not yet valid"
    return None


@HYPOTHESIS
@given(header=header_objects, payload=json_values | st.dictionaries(
    st.sampled_from(["iss", "aud", "sub", "exp", "iat", "realm", "kid"]), json_values, max_size=6),
       signed=st.booleans())
def test_random_tokens_on_a_route_with_an_external_issuer(token_service, external_trust, header, payload, signed):
    """Signed by the IdP's key: exactly the tokens that break none of its rules pass; unsigned ones never."""
    key, trust = external_trust
    if signed:
        now = int(time.time())
        base = {"iss": "https://idp.test", "aud": "gw", "sub": "u", "iat": now, "exp": now + 60}
        merged = {**base, **payload} if isinstance(payload, dict) else payload
        token = jwt.api_jws.encode(json.dumps(merged).encode(), key.private_key, algorithm="ES256",
                                   headers={"kid": "idp-es"})
        _judged(_verify_trusted(token_service, trust, token), idp_rule_broken(merged, time.time()))
    else:
        if isinstance(payload, dict):
            payload = {"iss": "https://idp.test", **payload}
        token = raw_token(header, payload, b"sig")
        _judged(_verify_trusted(token_service, trust, token), "not signed by the IdP")


def test_tokens_without_kid_or_alg_from_an_external_issuer_are_401(token_service, external_trust):
    key, trust = external_trust
    now = int(time.time())
    payload = {"iss": "https://idp.test", "aud": "gw", "sub": "u", "iat": now, "exp": now + 60}
    claims = json.dumps(payload).encode()
    no_kid = jwt.api_jws.encode(claims, key.private_key, algorithm="ES256")  # signed by the IdP's key, no kid
    odd_kids = [raw_token({"alg": "ES256", "kid": kid}, payload, b"sig") for kid in (None, 7, ["idp-es"])]
    for token in (no_kid, *odd_kids):
        with pytest.raises(GatewayError) as info:
            _verify_trusted(token_service, trust, token)()
        assert (info.value.status, info.value.detail) == (401, "Token header needs alg and kid")
    no_alg = f"{b64(json.dumps({'kid': 'idp-es', 'typ': 'JWT'}))}.{b64(claims)}.c2ln"
    with pytest.raises(GatewayError) as info:
        _verify_trusted(token_service, trust, no_alg)()
    assert (info.value.status, info.value.detail) == (401, "Token header needs alg and kid")
    good = jwt.api_jws.encode(claims, key.private_key, algorithm="ES256", headers={"kid": "idp-es"})
    assert _verify_trusted(token_service, trust, good)()["sub"] == "idp:u"


class ThreadedGateway:
    """A real gateway and upstream on real sockets, in their own thread, for synchronous Hypothesis tests."""

    def __init__(self, users_file: Path) -> None:
        self.users_file = users_file
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []
        self.port = 0

    def __enter__(self) -> "ThreadedGateway":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.runners.append(runner)
        return port

    async def _start(self) -> None:
        upstream = f"http://127.0.0.1:{await self._serve(create_upstream())}"
        config = parse_config(copy.deepcopy(base_config(upstream, self.users_file)), self.users_file.parent)
        self.port = await self._serve(create_app(config))

    async def _stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def live_gateway(users_file) -> Iterator[ThreadedGateway]:
    with ThreadedGateway(users_file) as gateway:
        yield gateway


def _assert_clean(status: int, body: bytes) -> None:
    assert status < 500, (status, body[:300])
    assert b"Traceback" not in body and b"File \"" not in body
    if status >= 400:
        payload = json.loads(body)
        assert set(payload) == {"detail", "code"}


ENDPOINT_FIELDS = {"/auth/token": ("username", "password"), "/auth/token/refresh": ("refresh",),
                   "/auth/token/verify": ("token",), "/auth/logout": ("refresh",)}
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


@HYPOTHESIS
@given(path=st.sampled_from(sorted(ENDPOINT_FIELDS)), data=st.data())
def test_random_json_fields_at_the_token_endpoints(live_gateway, path, data):
    """No random value is a password, a refresh token or a token: every answer is a clean 4xx."""
    fields = data.draw(st.fixed_dictionaries({name: json_values for name in ENDPOINT_FIELDS[path]}))
    extra = data.draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    body = json.dumps({**extra, **fields}).encode()
    status, answer = live_gateway.request("POST", path, body, {"Content-Type": "application/json"})
    _assert_clean(status, answer)
    assert 400 <= status < 500, (path, status, answer[:300])


@HYPOTHESIS
@given(path=st.sampled_from(sorted(ENDPOINT_FIELDS) + ["/auth/me", "/api/x", "/.well-known/jwks.json"]),
       method=st.sampled_from(["POST", "GET", "PUT"]),
       body=st.binary(max_size=2000),
       content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "multipart/form-data",
                                     "multipart/form-data; boundary=xyz", "text/plain", "application/jwt+json",
                                     "application/json; charset=utf-16", ""]),
       authorization=st.none() | header_text | header_text.map(lambda t: "Bearer " + t))
def test_random_bytes_at_the_endpoints(live_gateway, path, method, body, content_type, authorization):
    headers = {"Content-Type": content_type} if content_type else {}
    if authorization is not None:
        headers["Authorization"] = authorization
    status, answer = live_gateway.request(method, path, body, headers)
    _assert_clean(status, answer)
    if path == "/.well-known/jwks.json" and method == "GET":
        assert status == 200  # public: the only thing here a random request may get
    else:
        assert 400 <= status < 500, (method, path, status, answer[:300])  # nothing random authenticates


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=600))
def test_random_bytes_as_a_whole_request(live_gateway, data):
    """Not even HTTP: the server answers 4xx (or closes), never 5xx, never a traceback."""
    request = b"POST /auth/token HTTP/1.1\r\nConnection: close\r\n" + data + b"\r\n\r\n"
    answer = _raw_request(live_gateway.port, request)
    if answer:
        status = answer.split(b"\r\n", 1)[0].split(b" ")
        assert len(status) > 1 and status[1].startswith(b"4"), answer[:300]  # no credentials: refused, never served
    assert b"Traceback" not in answer


def test_the_live_gateway_survives_the_noise(live_gateway):
    status, body = live_gateway.request("GET", "/healthz", None, {})
    assert status == 200 and json.loads(body) == {"status": "ok"}
