"""The http source (a legacy Flask app's login endpoint) and the ldap source (slapd): their own behaviour."""
from __future__ import annotations

import logging
import sys

import jwt
import pytest

from tests.conftest import bearer
from tests.legacy.slapd import GROUPS, PEOPLE, SERVICE, SERVICE_PW, Slapd
from tests.ops.sources.conftest import SERVICE_KEY, LegacyApp
from tests.support.sources import free_port, process


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def login(gw, user: str, password: str | None = None, path: str = "/auth/token"):
    return await gw.post(path, json={"username": user, "password": password or f"{user}-pw"})


def http_entry(app_url: str, **extra: object) -> dict:
    return {"http": {"url": f"{app_url}/api/login", "subject": "user.username",
                     "claims": {"email": "user.email", "roles": "user.groups"}, "timeout": "10s", **extra}}


# -- http ---------------------------------------------------------------------------------

async def test_http_without_user_url_keeps_the_logins_claims_at_refresh(source_gateway, legacy_app: LegacyApp):
    gw = await source_gateway(http_entry(legacy_app.url))
    pair = await (await login(gw, "alice")).json()
    resp = await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
    assert resp.status == 200
    refreshed = await resp.json()
    assert claims_of(refreshed["access"])["roles"] == ["editors", "reporting"]
    resp = await gw.post("/auth/token/refresh", json={"refresh": refreshed["refresh"]})  # and again, from the successor
    assert resp.status == 200 and claims_of((await resp.json())["access"])["email"] == "alice@example.com"


async def test_http_form_body_and_accept_status(source_gateway, legacy_app: LegacyApp):
    gw = await source_gateway(http_entry(legacy_app.url, body="form", accept_status=[200, 201]))
    assert (await login(gw, "bob")).status == 200
    assert (await login(gw, "bob", "wrong")).status == 401


async def test_http_service_down_mid_test(source_gateway, tmp_path):
    """A second legacy app the test owns: stopped mid-test, then started again."""
    from tests.legacy import flask_app

    db, port = tmp_path / "app.db", free_port()
    flask_app.make_users(str(db))
    args = [sys.executable, "-m", "tests.legacy.flask_app", str(db), str(port), SERVICE_KEY]
    url = f"http://127.0.0.1:{port}"
    entry = http_entry(url, user_url=f"{url}/api/users/{{login}}", headers={"X-Service-Key": SERVICE_KEY})
    with process(args, port, tmp_path / "flask.log") as proc:
        gw = await source_gateway(entry)
        pair = await (await login(gw, "alice")).json()
        proc.terminate()
        proc.wait(10)
        resp = await login(gw, "alice")
        assert resp.status == 503 and (await resp.json())["code"] == "identity_unavailable"
        assert (await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})).status == 503
        assert (await gw.get("/api/x", headers=bearer(pair["access"]))).status == 200
    with process(args, port, tmp_path / "flask2.log"):
        assert (await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})).status == 200


async def test_http_wrong_service_key_is_an_outage_not_a_logout(source_gateway, legacy_app: LegacyApp, caplog):
    entry = http_entry(legacy_app.url, user_url=f"{legacy_app.url}/api/users/{{login}}", headers={"X-Service-Key": "wrong"})
    gw = await source_gateway(entry)
    pair = await (await login(gw, "alice")).json()
    with caplog.at_level(logging.WARNING):
        resp = await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
    assert resp.status == 503
    assert "wrong" not in caplog.text and "alice-pw" not in caplog.text


async def test_http_never_follows_a_redirect_with_the_credentials(source_gateway, aiohttp_server):
    from aiohttp import web

    seen: list[str] = []

    async def redirect(request: web.Request) -> web.Response:
        seen.append(request.path)
        raise web.HTTPFound("/elsewhere")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    server = await aiohttp_server(app)
    gw = await source_gateway(http_entry(str(server.make_url("")).rstrip("/")))
    assert (await login(gw, "alice")).status == 401
    assert seen == ["/api/login"]


# -- ldap ---------------------------------------------------------------------------------

def ldap_entry(server: Slapd, **extra: object) -> dict:
    return {"ldap": {"url": server.url, "bind_dn": SERVICE, "bind_password": SERVICE_PW, "user_base": PEOPLE,
                     "group_base": GROUPS, "attributes": {"email": "mail"}, "timeout": "2s", **extra}}


async def test_ldap_direct_bind(source_gateway, slapd: Slapd):
    gw = await source_gateway({"ldap": {"url": slapd.url, "user_dn": f"uid={{login}},{PEOPLE}", "group_base": GROUPS,
                                        "attributes": {"email": "mail"}}})
    resp = await login(gw, "alice")
    assert resp.status == 200
    claims = claims_of((await resp.json())["access"])
    assert claims["email"] == "alice@example.com" and set(claims["roles"]) == {"editors", "reporting"}
    assert (await login(gw, "alice", "wrong")).status == 401
    assert (await login(gw, "nobody")).status == 401
    assert (await login(gw, "alice,ou=people")).status == 401  # DN-escaped: no way into another branch
    pair = await (await login(gw, "bob")).json()
    assert (await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})).status == 200  # login's claims


async def test_ldap_role_map(source_gateway, slapd: Slapd):
    gw = await source_gateway(ldap_entry(slapd, role_map={"reporting": "reports-reader"}))
    claims = claims_of((await (await login(gw, "alice")).json())["access"])
    assert claims["roles"] == ["reports-reader"]


async def test_ldap_refused_service_bind_is_an_outage(source_gateway, slapd: Slapd):
    gw = await source_gateway(ldap_entry(slapd, bind_password="not-the-service-password"))
    resp = await login(gw, "alice")
    assert resp.status == 503 and (await resp.json())["code"] == "identity_unavailable"


async def test_ldap_directory_down_mid_test(source_gateway, tmp_path):
    server = Slapd(tmp_path, free_port())
    server.start()
    server.load()
    try:
        gw = await source_gateway(ldap_entry(server))
        pair = await (await login(gw, "alice")).json()
        server.stop()
        assert (await login(gw, "alice")).status == 503
        assert (await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})).status == 503
        assert (await gw.get("/api/x", headers=bearer(pair["access"]))).status == 200
        assert (await (await gw.get("/readyz")).json())["sources"] == {"ldap": "down"}
        server.start()
        assert (await login(gw, "alice")).status == 200
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_slapd(tmp_path_factory) -> Slapd:
    server = Slapd(tmp_path_factory.mktemp("slapd-tls"), free_port(), free_port())
    server.start()
    server.load()
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
async def test_ldap_over_tls_with_the_ca_file(source_gateway, tls_slapd: Slapd, mode):
    url = f"ldaps://127.0.0.1:{tls_slapd.ldaps_port}" if mode == "ldaps" else tls_slapd.url
    tls = {"ca_file": str(tls_slapd.ca_file), "start_tls": mode == "start_tls"}
    gw = await source_gateway(ldap_entry(tls_slapd, url=url, **tls))
    assert (await login(gw, "alice")).status == 200
    assert (await login(gw, "alice", "wrong")).status == 401


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
async def test_ldap_tls_refuses_a_certificate_it_cannot_verify(source_gateway, tls_slapd: Slapd, mode, tmp_path):
    from tests.legacy.slapd import make_tls

    other_ca = make_tls(tmp_path)  # a CA that did not sign the directory's certificate
    url = f"ldaps://127.0.0.1:{tls_slapd.ldaps_port}" if mode == "ldaps" else tls_slapd.url
    gw = await source_gateway(ldap_entry(tls_slapd, url=url, ca_file=str(other_ca), start_tls=mode == "start_tls"))
    resp = await login(gw, "alice")
    assert resp.status == 503 and (await resp.json())["code"] == "identity_unavailable"


def test_ldap_starttls_is_refused_by_a_plain_directory_and_checked_by_config(slapd: Slapd, tmp_path):
    from gateway.config import ConfigError, parse_config
    from tests.ops.sources.conftest import sources_config

    raw = sources_config("http://127.0.0.1:1", [{"ldap": {"url": "ldaps://x", "start_tls": True, "user_base": PEOPLE}}])
    with pytest.raises(ConfigError, match=r"users\[0\]\.ldap: start_tls: only with ldap://"):
        parse_config(raw, tmp_path)
