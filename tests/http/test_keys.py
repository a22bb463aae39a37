"""Signing keys: algorithms, key sources, rotation, the JWKS and discovery documents, and the CLI."""
from __future__ import annotations

import asyncio
import copy
import os
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
import yaml

from gateway.app import create_app
from gateway.auth.keys import KeyRing, jwk_thumbprint
from gateway.config import ConfigError, parse_config
from gateway.stores.redis import RedisStore
from tests.conftest import ROOT, SECRET, base_config, bearer, login
from tests.support.jwt_tools import make_key, raw_token, sign

ASYMMETRIC = ["RS256", "ES256", "EdDSA"]


def keys_config(*specs: dict, **tokens: object) -> dict:
    return {"tokens": {"secret": None, "keys": list(specs), **tokens}}


async def jwks_client_key(gateway, token: str):
    """What an upstream does: PyJWKClient fetches the JWKS over HTTP (urllib, so off the loop)."""
    url = str(gateway.make_url("/.well-known/jwks.json"))
    client = jwt.PyJWKClient(url, cache_keys=False)
    return await asyncio.get_running_loop().run_in_executor(None, client.get_signing_key_from_jwt, token)


async def test_short_form_is_one_hs256_key_and_is_never_published(gateway):
    body = await login(gateway)
    header = jwt.get_unverified_header(body["access"])
    assert header["alg"] == "HS256" and header["kid"].startswith("hs-")
    resp = await gateway.get("/.well-known/jwks.json")
    assert resp.status == 200 and await resp.json() == {"keys": []}
    assert SECRET not in await resp.text()


@pytest.mark.parametrize("alg", ASYMMETRIC)
async def test_asymmetric_keys_sign_and_publish(make_gateway, tmp_path, alg):
    key = make_key(tmp_path, alg)
    gateway = await make_gateway(**keys_config(key.spec(active=True)))
    body = await login(gateway)
    header = jwt.get_unverified_header(body["access"])
    assert header == {"alg": alg, "kid": key.kid, "typ": "JWT"}
    signing_key = await jwks_client_key(gateway, body["access"])
    claims = jwt.decode(body["access"], signing_key.key, algorithms=[alg], audience="test-clients")
    assert claims["sub"] == "alice"
    assert (await gateway.get("/api/x", headers=bearer(body["access"]))).status == 200
    refreshed = await gateway.post("/auth/token/refresh", json={"refresh": body["refresh"]})
    assert refreshed.status == 200


async def test_jwks_lists_public_keys_only_with_cache_headers(make_gateway, tmp_path):
    es, ed, hs = make_key(tmp_path, "ES256"), make_key(tmp_path, "EdDSA"), make_key(tmp_path, "HS256")
    gateway = await make_gateway(**keys_config(es.spec(), ed.spec(active=True), hs.spec(), jwks_max_age="2m"))
    resp = await gateway.get("/.well-known/jwks.json")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "public, max-age=120"
    jwks = await resp.json()
    assert [k["kid"] for k in jwks["keys"]] == [ed.kid, es.kid]  # active first, the HS256 key never
    for jwk in jwks["keys"]:
        assert "d" not in jwk and "k" not in jwk and jwk["use"] == "sig"
        assert jwk_thumbprint(jwk) == jwk["kid"]
    assert hs.private_pem.decode() not in await resp.text()
    again = await gateway.get("/.well-known/jwks.json", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    assert (await gateway.head("/.well-known/jwks.json")).status == 200
    assert (await gateway.post("/.well-known/jwks.json")).status == 405


async def test_discovery_document_points_at_jwks_and_token_endpoints(make_gateway, tmp_path):
    key = make_key(tmp_path, "ES256")
    gateway = await make_gateway(**keys_config(key.spec(active=True)))
    doc = await (await gateway.get("/.well-known/openid-configuration")).json()
    base = str(gateway.make_url("")).rstrip("/")
    assert doc["issuer"] == "test-gw"
    assert doc["jwks_uri"] == base + "/.well-known/jwks.json"
    assert doc["token_endpoint"] == base + "/auth/token"
    assert doc["token_refresh_endpoint"] == base + "/auth/token/refresh"
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    configured = await make_gateway(public_url="https://auth.example.com/", **keys_config(key.spec(active=True)))
    doc = await (await configured.get("/.well-known/openid-configuration")).json()
    assert doc["jwks_uri"] == "https://auth.example.com/.well-known/jwks.json"


async def test_discovery_refuses_a_hostile_host_header(gateway):
    resp = await gateway.get("/.well-known/openid-configuration", headers={"Host": "evil.example/<script>"})
    assert resp.status == 400 and (await resp.json())["code"] == "bad_request"


async def test_rotation_without_downtime(make_gateway, tmp_path, redis_url):
    """Add a key, make it active, retire the old one: each step is a new config over the same store."""
    old, new = make_key(tmp_path, "ES256", "old"), make_key(tmp_path, "EdDSA", "new")
    step1 = await make_gateway(RedisStore(redis_url), **keys_config(old.spec(active=True), new.spec()))
    before = await login(step1)
    assert jwt.get_unverified_header(before["access"])["kid"] == "old"

    step2 = await make_gateway(RedisStore(redis_url), **keys_config(old.spec(), new.spec(), signing_kid="new"))
    assert (await step2.get("/api/x", headers=bearer(before["access"]))).status == 200  # old key still verifies
    resp = await step2.post("/auth/token/refresh", json={"refresh": before["refresh"]})
    after = await resp.json()
    assert resp.status == 200 and jwt.get_unverified_header(after["access"])["kid"] == "new"
    kids = [k["kid"] for k in (await (await step2.get("/.well-known/jwks.json")).json())["keys"]]
    assert kids == ["new", "old"]

    step3 = await make_gateway(RedisStore(redis_url), **keys_config(new.spec(active=True)))
    assert (await step3.get("/api/x", headers=bearer(after["access"]))).status == 200
    resp = await step3.get("/api/x", headers=bearer(before["access"]))
    assert resp.status == 401 and (await resp.json())["detail"] == "Token is signed with an unknown key"


async def test_unknown_kid_is_refused(make_gateway, tmp_path):
    ring, stranger = make_key(tmp_path, "ES256", "ring"), make_key(tmp_path / "other", "ES256", "ring2", material="stranger")
    gateway = await make_gateway(**keys_config(ring.spec(active=True)))
    body = await login(gateway)
    claims = jwt.decode(body["access"], options={"verify_signature": False})
    forged_tokens = [sign(stranger, claims, kid=kid) for kid in ("ring2", "", "../ring", "RING")]
    forged_tokens += [raw_token({"alg": "ES256", "kid": kid}, claims) for kid in (None, 123, ["ring"], {"k": "ring"})]
    forged_tokens.append(raw_token({"alg": "ES256"}, claims))
    for forged in forged_tokens:
        resp = await gateway.get("/api/x", headers=bearer(forged))
        assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"
    assert stranger.private_pem != ring.private_pem
    # the right kid with the wrong key is a bad signature, not a pass
    resp = await gateway.get("/api/x", headers=bearer(sign(stranger, claims, kid="ring")))
    assert resp.status == 401 and (await resp.json())["detail"] == "Token signature is not valid"


@pytest.mark.parametrize("escaped", [False, True])
async def test_private_key_from_environment(make_gateway, tmp_path, monkeypatch, escaped):
    key = make_key(tmp_path, "ES256", "env-key")
    pem = key.private_pem.decode()
    monkeypatch.setenv("TEST_GW_PRIVATE_KEY", pem.replace("\n", "\\n") if escaped else pem)
    spec = {"kid": "env-key", "algorithm": "ES256", "private_key_env": "TEST_GW_PRIVATE_KEY", "active": True}
    gateway = await make_gateway(**keys_config(spec))
    body = await login(gateway)
    assert jwt.get_unverified_header(body["access"])["kid"] == "env-key"


async def test_verify_only_public_key(make_gateway, tmp_path, redis_url):
    """An old instance's key known by its public half only still verifies what it signed (one shared store)."""
    retired, current = make_key(tmp_path, "RS256", "retired"), make_key(tmp_path, "ES256", "current")
    first = await make_gateway(store=RedisStore(redis_url), **keys_config(retired.spec(active=True)))
    body = await login(first)
    public_only = {"kid": "retired", "algorithm": "RS256", "public_key_file": str(retired.public_path)}
    second = await make_gateway(store=RedisStore(redis_url), **keys_config(public_only, current.spec(active=True)))
    assert (await second.get("/api/x", headers=bearer(body["access"]))).status == 200


def _problems(raw: dict, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config = parse_config(copy.deepcopy(raw), tmp_path)
        KeyRing.from_config(config.tokens)
    return info.value.problems


def test_key_config_errors_name_their_location(tmp_path, users_file):
    es = make_key(tmp_path, "ES256", "es")
    rs_small = tmp_path / "small.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    rs_small.write_bytes(small.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    other = make_key(tmp_path / "o", "ES256", "other")

    def cfg(**tokens):
        return base_config("http://127.0.0.1:1", users_file, tokens=tokens)

    cases = [
        (cfg(secret="short"), "tokens.secret: HS256 needs a secret of at least 32 bytes"),
        (cfg(secret=None, keys=[{"kid": "h", "algorithm": "HS256", "secret": "x" * 31, "active": True}]),
         "tokens.keys[0]: HS256 needs a secret of at least 32 bytes"),
        (cfg(algorithm="ES256"), "tokens.algorithm: the short form (algorithm + secret) is HS256 only"),
        (cfg(keys=[es.spec(active=True)]), "give either secret (one HS256 key) or keys"),
        (cfg(secret=None, keys=[es.spec(), other.spec()]), "exactly one key must be active"),
        (cfg(secret=None, keys=[es.spec(active=True), other.spec(active=True)]), "exactly one key must be active"),
        (cfg(secret=None, keys=[es.spec()], signing_kid="nope"), "signing_kid: no key has kid 'nope'"),
        (cfg(secret=None, keys=[es.spec(active=True), {**other.spec(), "kid": "es"}]), "duplicate kids ['es']"),
        (cfg(secret=None, keys=[{"kid": "p", "algorithm": "ES256", "public_key_file": str(es.public_path), "active": True}]),
         "the active key 'p' needs its private key"),
        (cfg(secret=None, keys=[{"kid": "a b", "algorithm": "ES256", "private_key_file": "x", "active": True}]),
         "tokens.keys[0].kid: a kid is 1-64 characters"),
        (cfg(secret=None, keys=[{"kid": "n", "algorithm": "none", "private_key_file": "x", "active": True}]),
         "tokens.keys[0].algorithm"),
        (cfg(secret=None, keys=[{"kid": "m", "algorithm": "ES256", "private_key_file": "missing.pem", "active": True}]),
         "tokens.keys[0] (m): private key: cannot read"),
        (cfg(secret=None, keys=[{"kid": "s", "algorithm": "RS256", "private_key_file": str(rs_small), "active": True}]),
         "RSA keys need at least 2048 bits"),
        (cfg(secret=None, keys=[{"kid": "t", "algorithm": "EdDSA", "private_key_file": str(es.private_path), "active": True}]),
         "private key: not a key for EdDSA"),
        (cfg(secret=None, keys=[{"kid": "u", "algorithm": "ES256", "private_key_file": str(es.private_path),
                                 "public_key_file": str(other.public_path), "active": True}]),
         "the public key does not belong to the private key"),
        (cfg(secret=None, keys=[{"kid": "v", "algorithm": "ES256", "private_key_env": "TEST_GW_UNSET_VAR", "active": True}]),
         "environment variable TEST_GW_UNSET_VAR is not set"),
        (cfg(secret=None, keys=[{"kid": "w", "algorithm": "ES256", "secret": "x" * 40, "active": True}]),
         "needs a private or public PEM key"),
    ]
    for raw, expected in cases:
        problems = _problems(raw, tmp_path)
        assert any(expected in p for p in problems), (expected, problems)


def test_relative_key_files_are_relative_to_the_config_file(tmp_path, users_file):
    key = make_key(tmp_path / "keys", "ES256", "rel")
    raw = base_config("http://127.0.0.1:1", users_file,
                      tokens={"secret": None, "keys": [{"kid": "rel", "algorithm": "ES256",
                                                        "private_key_file": "keys/rel.key", "active": True}]})
    config = parse_config(raw, tmp_path)
    assert KeyRing.from_config(config.tokens).active.kid == key.kid


def _cli(*args: str, cwd: Path = ROOT, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, capture_output=True, text=True,
                          input=stdin, timeout=60, env={**os.environ})


def test_cli_generates_a_key_that_the_gateway_accepts(tmp_path, users_file):
    result = _cli("keys", "generate", "--alg", "ES256", "--out", str(tmp_path / "keys"))
    assert result.returncode == 0, result.stderr
    kid = result.stdout.split("kid: ")[1].split()[0]
    private, public = tmp_path / "keys" / f"{kid}.key.pem", tmp_path / "keys" / f"{kid}.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and public.exists()
    raw = base_config("http://127.0.0.1:1", users_file,
                      tokens={"secret": None, "keys": [{"kid": kid, "algorithm": "ES256",
                                                        "private_key_file": str(private), "active": True}]})
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    check = _cli("check", str(path))
    assert check.returncode == 0, check.stderr
    ring = KeyRing.from_config(parse_config(raw, tmp_path).tokens)
    assert jwk_thumbprint(ring.jwks()["keys"][0]) == kid
    again = _cli("keys", "generate", "--alg", "ES256", "--out", str(tmp_path / "keys"), f"--kid={kid}")  # a kid may start with -
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def test_cli_check_reports_a_missing_key_file(tmp_path, users_file):
    raw = base_config("http://127.0.0.1:1", users_file,
                      tokens={"secret": None, "keys": [{"kid": "k", "algorithm": "RS256",
                                                        "private_key_file": "nowhere.pem", "active": True}]})
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = _cli("check", str(path))
    assert result.returncode == 1 and "tokens.keys[0] (k): private key: cannot read" in result.stderr


def test_cli_check_warns_about_confusable_usernames(tmp_path):
    from gateway.sources.users import hash_password

    digest = hash_password("pw")
    users = {"users": {"alice": {"password_hash": digest}, "\uff41lice": {"password_hash": digest}}}
    (tmp_path / "users.yaml").write_text(yaml.safe_dump(users, allow_unicode=True), encoding="utf-8")
    raw = {"tokens": {"secret": SECRET}, "users_file": "users.yaml"}
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(raw))
    result = _cli("check", str(tmp_path / "gw.yaml"))
    assert result.returncode == 0
    assert "not in NFKC form" in result.stderr and "looks like user 'alice'" in result.stderr


async def test_app_refuses_to_start_with_an_unreadable_key(make_config, tmp_path):
    config = make_config(tokens={"secret": None, "keys": [{"kid": "k", "algorithm": "ES256",
                                                           "private_key_file": str(tmp_path / "no.pem"), "active": True}]})
    with pytest.raises(ConfigError):
        create_app(config)


async def test_a_real_gateway_process_signs_with_a_generated_key(gateway_process, users_file, tmp_path):
    """CLI-generated EdDSA key, `gateway run` as a process: login, then verify via the published JWKS."""
    result = _cli("keys", "generate", "--alg", "EdDSA", "--out", str(tmp_path / "keys"), "--kid", "ed-1")
    assert result.returncode == 0, result.stderr
    raw = base_config("http://127.0.0.1:1", users_file,
                      tokens={"secret": None, "keys": [{"kid": "ed-1", "algorithm": "EdDSA", "active": True,
                                                        "private_key_file": str(tmp_path / "keys" / "ed-1.key.pem")}]})
    base = f"http://127.0.0.1:{gateway_process(raw)}"
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/auth/token", json={"username": "bob", "password": "bob-password"}) as resp:
            assert resp.status == 200
            access = (await resp.json())["access"]
        async with session.get(f"{base}/.well-known/openid-configuration") as resp:
            jwks_uri = (await resp.json())["jwks_uri"]
    assert jwks_uri == f"{base}/.well-known/jwks.json"
    client = jwt.PyJWKClient(jwks_uri)
    key = await asyncio.get_running_loop().run_in_executor(None, client.get_signing_key_from_jwt, access)
    assert jwt.decode(access, key.key, algorithms=["EdDSA"], audience="test-clients")["sub"] == "bob"
