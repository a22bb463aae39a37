"""The OIDC test provider itself (tests/support/oidc.py + oidc_provider/): discovery, the code flow with PKCE
and each client authentication method driven by a plain client, password refusal, key rotation, RP-initiated
and back-channel logout, and the slow-provider switch. The gateway's own OIDC tests build on these."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from yarl import URL

from tests.support.oidc import (
    OidcClient,
    OidcProvider,
    OidcUser,
    SignInFailed,
    client_session,
    end_session,
    rsa_key,
    sign_in,
)

REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: sign_in stops at the redirect to it
SECRET = "client-secret-0123456789abcdef0123456789"
ALICE = OidcUser("alice", "alice-pw", email="alice@corp.example", name="Alice", groups=("admins", "staff"),
                 claims={"realm_access": {"roles": ["reader"]}})


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def discovery(session: aiohttp.ClientSession, op: OidcProvider) -> dict[str, Any]:
    async with session.get(f"{op.issuer}/.well-known/openid-configuration") as resp:
        assert resp.status == 200
        result: dict[str, Any] = await resp.json()
        return result


async def code_flow(session: aiohttp.ClientSession, op: OidcProvider, client_id: str, *, auth: str = "basic",
                    key: Any = None, user: str = "alice", password: str = "alice-pw") -> dict[str, Any]:
    """What a relying party does: authorize with state, nonce and PKCE, sign in, exchange the code."""
    meta = await discovery(session, op)
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    url = URL(meta["authorization_endpoint"]).with_query(
        client_id=client_id, response_type="code", scope="openid email profile", redirect_uri=REDIRECT, state=state,
        nonce=nonce, code_challenge=challenge, code_challenge_method="S256")
    back = await sign_in(session, str(url), user, password)
    assert back.query["state"] == state and back.query["iss"] == op.issuer
    form = {"grant_type": "authorization_code", "code": back.query["code"], "redirect_uri": REDIRECT, "code_verifier": verifier}
    headers = {}
    if auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{client_id}:{SECRET}".encode()).decode()
    elif auth == "post":
        form |= {"client_id": client_id, "client_secret": SECRET}
    else:
        assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": meta["token_endpoint"], "jti": str(uuid.uuid4()),
                                "iat": int(time.time()), "exp": int(time.time()) + 60}, key.private_pem, "RS256",
                               headers={"kid": key.kid})
        form |= {"client_id": client_id, "client_assertion": assertion,
                 "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    async with session.post(meta["token_endpoint"], data=form, headers=headers) as resp:
        tokens: dict[str, Any] = await resp.json()
        assert resp.status == 200, tokens
    jwks = jwt.PyJWKClient(meta["jwks_uri"])  # urllib, blocking: fine for one small fetch on loopback
    signing = jwks.get_signing_key_from_jwt(tokens["id_token"])
    claims = jwt.decode(tokens["id_token"], signing.key, ["RS256"], audience=client_id, issuer=op.issuer)
    assert claims["nonce"] == nonce
    return {**tokens, "claims": claims, "kid": jwt.get_unverified_header(tokens["id_token"])["kid"]}


@pytest.fixture
def backchannel() -> list[dict[str, str]]:
    return []


@pytest.fixture
async def receiver(aiohttp_server: Any, backchannel: list[dict[str, str]]) -> str:
    """A relying party's back-channel logout endpoint: records what the provider posts."""
    async def handler(request: web.Request) -> web.Response:
        backchannel.append(dict(await request.post()))  # type: ignore[arg-type]
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/backchannel", handler)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/backchannel"


async def test_discovery_login_and_token_exchange(tmp_path: Path) -> None:
    client = OidcClient("rp", [REDIRECT], client_secret=SECRET)
    async with OidcProvider(tmp_path, [client], [ALICE]) as op, client_session() as session:
        meta = await discovery(session, op)
        assert meta["issuer"] == op.issuer
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(meta["token_endpoint_auth_methods_supported"])
        assert meta["backchannel_logout_supported"] is True and meta["end_session_endpoint"] == f"{op.issuer}/session/end"
        result = await code_flow(session, op, "rp")
        claims = result["claims"]
        assert (claims["sub"], claims["email"], claims["name"]) == ("alice", "alice@corp.example", "Alice")
        assert claims["groups"] == ["admins", "staff"] and claims["realm_access"] == {"roles": ["reader"]}
        assert result["kid"] == op.signing_kid
        # the provider session is remembered: a second authorization needs no form at all
        again = await code_flow(session, op, "rp")
        assert again["claims"]["sub"] == "alice"


async def test_pkce_is_required_and_a_wrong_password_is_refused(tmp_path: Path) -> None:
    async with OidcProvider(tmp_path, [OidcClient("rp", [REDIRECT], client_secret=SECRET)], [ALICE]) as op, \
            client_session() as session:
        url = URL(f"{op.issuer}/auth").with_query(client_id="rp", response_type="code", scope="openid",
                                                  redirect_uri=REDIRECT, state="s", nonce="n")
        back = await sign_in(session, str(url), "alice", "alice-pw")  # the error goes back to the client
        assert back.query["error"] == "invalid_request" and "PKCE" in back.query["error_description"]
        with pytest.raises(SignInFailed, match="Invalid user or password"):
            await code_flow(session, op, "rp", password="wrong")


@pytest.mark.parametrize("auth", ["post", "private_key_jwt"])
async def test_client_authentication_methods(tmp_path: Path, auth: str) -> None:
    key = rsa_key("rp-key")
    client = (OidcClient("rp", [REDIRECT], client_secret=SECRET, token_endpoint_auth_method="client_secret_post")
              if auth == "post" else OidcClient("rp", [REDIRECT], key=key))
    async with OidcProvider(tmp_path, [client], [ALICE]) as op, client_session() as session:
        assert (await code_flow(session, op, "rp", auth=auth, key=key))["claims"]["sub"] == "alice"
        if auth == "private_key_jwt":  # a secret is no way in for a private_key_jwt client
            with pytest.raises(AssertionError):
                await code_flow(session, op, "rp", auth="post")


async def test_key_rotation_restarts_on_the_same_port(tmp_path: Path) -> None:
    async with OidcProvider(tmp_path, [OidcClient("rp", [REDIRECT], client_secret=SECRET)], [ALICE]) as op, \
            client_session() as session:
        port, first = op.port, op.signing_kid
        assert (await code_flow(session, op, "rp"))["kid"] == first
        second = op.rotate_keys(keep_old=True)
        assert op.port == port and second != first
        async with session.get(f"{op.issuer}/jwks") as resp:
            assert [k["kid"] for k in (await resp.json())["keys"]] == [second, first]
        assert (await code_flow(session, op, "rp"))["kid"] == second  # the old provider session is gone: forms again
        third = op.rotate_keys()
        async with session.get(f"{op.issuer}/jwks") as resp:
            assert [k["kid"] for k in (await resp.json())["keys"]] == [third]


async def test_end_session_sends_the_back_channel_logout(tmp_path: Path, receiver: str,
                                                         backchannel: list[dict[str, str]]) -> None:
    client = OidcClient("rp", [REDIRECT], client_secret=SECRET, post_logout_redirect_uris=["http://127.0.0.1:9/bye"],
                        backchannel_logout_uri=receiver)
    async with OidcProvider(tmp_path, [client], [ALICE]) as op, client_session() as session:
        result = await code_flow(session, op, "rp")
        sid = result["claims"]["sid"]
        meta = await discovery(session, op)
        url = URL(meta["end_session_endpoint"]).with_query(id_token_hint=result["id_token"], state="x",
                                                            post_logout_redirect_uri="http://127.0.0.1:9/bye")
        back = await end_session(session, str(url))
        assert back.with_query(None) == URL("http://127.0.0.1:9/bye") and back.query["state"] == "x"
        assert len(backchannel) == 1
        token = backchannel[0]["logout_token"]
        signing = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token)
        logout = jwt.decode(token, signing.key, ["RS256"], audience="rp", issuer=op.issuer)
        assert (logout["sub"], logout["sid"]) == ("alice", sid)
        assert "http://schemas.openid.net/event/backchannel-logout" in logout["events"] and "nonce" not in logout
        assert f"backchannel.success client=rp sub=alice sid={sid}" in op.log()
        # the provider's session is over: signing in again shows the login form (a wrong password proves it)
        with pytest.raises(SignInFailed):
            await code_flow(session, op, "rp", password="wrong")
        # and a logout token on demand, for a given sid
        assert await op.backchannel_logout("rp", "alice", "some-sid") == {"ok": True}
        assert backchannel[1]["logout_token"] and len(backchannel) == 2


async def test_a_slow_provider(tmp_path: Path) -> None:
    async with OidcProvider(tmp_path, [OidcClient("rp", [REDIRECT], client_secret=SECRET)], [ALICE]) as op:
        await op.set_delay(30, prefix="/.well-known/")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
            with pytest.raises(TimeoutError):
                await session.get(f"{op.issuer}/.well-known/openid-configuration")
            async with session.get(f"{op.issuer}/jwks") as resp:  # other paths are not delayed
                assert resp.status == 200
        await op.set_delay(0)
        async with client_session() as session:
            assert (await discovery(session, op))["issuer"] == op.issuer
