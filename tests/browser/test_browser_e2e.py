"""End to end in headless Chromium: the real gateway (started through its CLI), a real upstream,
and the gateway-served client.js, in bearer mode.

Layout (all on 127.0.0.1, one origin for the page and the API so no CORS is involved):

    chromium --> gateway :G --/app/*--> page server (aiohttp, this test's loop)   auth: none
                            --/api/*--> example upstream (python -m gateway.example_upstream)
                            /auth/*     the gateway's own endpoints, /auth/client.js

Refreshes are counted at the gateway, from its JSON access log (one line per request with
method, path and status).
"""
from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from harness import REPO_ROOT, free_port, run_page_async
from stack import run_gateway
from tests.support.processes import example_upstream

CLIENT_PATH = "/auth/client.js"
SECRET = "e2e-secret-" + "x" * 40
PASSWORD = "correct horse battery staple"


PAGE = r"""<!doctype html><meta charset=utf-8><title>e2e</title><link rel=icon href=data:,>
<script type=module>
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mark = (name) => fetch('/app/mark/' + name);   // a marker line in the gateway access log
window.addEventListener('unhandledrejection', (e) => {
  if (window.__result === undefined) window.__result = { error: 'unhandledrejection: ' + (e.reason && e.reason.stack || e.reason) };
});
try {
  const { createClient } = await import('__CLIENT__');
  const logouts = [];
  const gw = createClient({ baseURL: location.origin, onLogout: (e) => logouts.push(e.reason) });
  const login = await gw.login('alice', '__PASSWORD__');
  const firstAccess = gw.accessToken;
  const first = await gw.fetch('/api/hello?n=0');
  const firstBody = await first.json();

  // let the access token expire (lifetime from the login answer, leeway 0 in the config)
  await sleep(login.expires_in * 1000 + 800);
  const expired = await fetch('/api/hello', { headers: { Authorization: 'Bearer ' + firstAccess } });
  const expiredBody = await expired.json();

  await mark('burst-start');
  const burst = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    i % 2 ? gw.fetch('/api/items/' + i)
          : gw.fetch('/api/items/' + i, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ i }) })));
  const burstBodies = await Promise.all(burst.map((r) => r.json()));
  await mark('burst-end');
  const renewedAccess = gw.accessToken;
  const renewedRefresh = gw.refreshToken;

  const loggedOut = await gw.logout();
  const afterLogout = await gw.fetch('/api/hello?n=after');
  // the tokens the page held just before logout are dead at the gateway, not only forgotten
  const revokedAccess = await fetch('/api/hello', { headers: { Authorization: 'Bearer ' + renewedAccess } });
  const revokedRefresh = await fetch('/auth/token/refresh', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh: renewedRefresh }) });

  window.__result = {
    login: { token_type: login.token_type, expires_in: login.expires_in, hasRefresh: !!login.refresh },
    firstStatus: first.status, firstBody,
    expiredStatus: expired.status, expiredCode: expiredBody.code,
    burstStatuses: burst.map((r) => r.status), burstBodies,
    tokenChanged: renewedAccess !== firstAccess,
    loggedOut, afterLogoutStatus: afterLogout.status, accessTokenAfterLogout: gw.accessToken,
    revokedAccessStatus: revokedAccess.status, revokedAccessCode: (await revokedAccess.json()).code,
    revokedRefreshStatus: revokedRefresh.status,
    logouts,
  };
} catch (e) {
  window.__result = { error: String(e && e.stack || e) };
}
</script>
"""


@pytest.fixture
async def stack(tmp_path, aiohttp_server, browser_env):
    """Gateway + upstream as subprocesses, the page server in this loop. Yields (base_url, log)."""
    try:
        from gateway.sources.users import hash_password
    except ImportError as e:  # pragma: no cover - the core is not there yet
        pytest.fail(f"gateway package not importable: {e}")

    async def page(request):
        return web.Response(text=PAGE.replace("__CLIENT__", CLIENT_PATH).replace("__PASSWORD__", PASSWORD),
                            content_type="text/html", headers={"Cache-Control": "no-store"})

    async def marker(request):
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/app/index.html", page)
    app.router.add_get("/app/mark/{name}", marker)
    page_server = await aiohttp_server(app, host="127.0.0.1")

    up_port, gw_port = free_port(), free_port()
    (tmp_path / "users.yaml").write_text(
        "users:\n  alice:\n"
        f"    password_hash: {json.dumps(hash_password(PASSWORD))}\n"
        "    claims: {roles: [user], email: alice@example.com}\n")
    (tmp_path / "gateway.yaml").write_text(f"""
listen: {{host: 127.0.0.1, port: {gw_port}}}
tokens:
  secret: {SECRET}
  issuer: gateway
  audience: gateway-clients
  access_lifetime: 2s
  refresh_lifetime: 1h
  leeway: 0s
  refresh_grace: 0s
  rotate_refresh: true
store: {{backend: memory}}
users_file: users.yaml
routes:
  - name: app
    prefix: /app
    upstream: http://127.0.0.1:{page_server.port}
    auth: none
  - name: api
    prefix: /api
    upstream: http://127.0.0.1:{up_port}
    auth: required
    headers: {{X-User-Id: sub, X-User-Roles: roles}}
""")
    upstream = example_upstream(tmp_path, port=up_port, env={"PYTHONUNBUFFERED": "1"}).start()
    try:
        async with run_gateway(tmp_path / "gateway.yaml", gw_port, tmp_path / "gateway.log") as gateway:
            yield gateway
    finally:
        upstream.stop()


async def test_gateway_serves_client_js(stack):
    base = stack.url
    async with aiohttp.ClientSession() as s, s.get(base + CLIENT_PATH) as r:
        body = await r.read()
        assert r.status == 200, f"{CLIENT_PATH} answered {r.status}"
        assert r.content_type in ("text/javascript", "application/javascript")
    assert body == (REPO_ROOT / "gateway" / "static" / "client.js").read_bytes()


async def test_bearer_mode_login_expiry_single_refresh_logout(stack):
    base = stack.url
    r = await run_page_async(base + "/app/index.html", timeout=60)
    assert isinstance(r, dict) and "error" not in r, r

    assert r["login"] == {"token_type": "Bearer", "expires_in": 2, "hasRefresh": True}
    # the protected upstream route answered, with the verified identity injected
    assert r["firstStatus"] == 200
    headers = {k.lower(): v for k, v in r["firstBody"]["headers"].items()}
    assert headers["x-user-id"] == "alice"
    assert "authorization" not in headers  # forward_authorization: false
    assert r["expiredStatus"] == 401 and r["expiredCode"] == "token_expired"

    # ten parallel requests after expiry: all succeed, after exactly one refresh
    assert r["burstStatuses"] == [200] * 10
    assert [b["path"] for b in r["burstBodies"]] == [f"/api/items/{i}" for i in range(10)]
    assert [b["method"] for b in r["burstBodies"]] == ["POST", "GET"] * 5
    assert r["tokenChanged"]

    entries = stack.access_log()
    assert entries, f"no JSON access-log lines in the gateway output:\n{stack.log.read_text()[-3000:]}"
    paths = [e["path"] for e in entries]
    start, end = paths.index("/app/mark/burst-start"), paths.index("/app/mark/burst-end")
    burst = entries[start + 1:end]
    refreshes = [e for e in burst if e["path"].rstrip("/") == "/auth/token/refresh"]
    assert [e["status"] for e in refreshes] == [200], refreshes
    api = [e for e in burst if e["path"].startswith("/api/")]
    assert sorted(e["status"] for e in api) == [200] * 10 + [401] * 10

    # logout: the client forgets its tokens and the gateway revokes them
    assert r["loggedOut"] is True
    assert r["afterLogoutStatus"] == 401 and r["accessTokenAfterLogout"] is None
    assert r["revokedAccessStatus"] == 401 and r["revokedAccessCode"] == "token_revoked"
    assert r["revokedRefreshStatus"] == 401
    assert r["logouts"] == ["logout"]
    all_refreshes = [e for e in entries if e["path"].rstrip("/") == "/auth/token/refresh"]
    assert [e["status"] for e in all_refreshes] == [200, 401]
