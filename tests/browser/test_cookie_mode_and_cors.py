"""In headless Chromium against the real gateway: client.js in cookie mode, and CORS from
other origins (allowed, with bearer and cookie sessions; refused).

Layout: the gateway runs through its CLI; the site (pages + protected upstream API) runs on this
test's event loop. Same-origin pages are loaded through the gateway's /app route; cross-origin
pages straight from the site (``127.0.0.1:<site>`` is allowed, ``localhost:<site>`` is not).
"""
from __future__ import annotations

import contextlib

import pytest

from harness import run_page_async
from stack import Site, gateway_config, start_gateway


@pytest.fixture
async def stack(tmp_path, aiohttp_server, browser_env):
    """``start(pages, **config)`` -> (site, site_server, gateway); config may use the site's port."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(pages, config=lambda site_port: {}):
            site = Site(pages)
            server = await aiohttp_server(site.app(), host="127.0.0.1")
            gateway = await stack.enter_async_context(
                start_gateway(tmp_path, gateway_config(server.port, **config(server.port))))
            site.gateway = gateway.url
            return site, server, gateway
        yield start


COOKIE_PAGE = r"""<script type=module>
import { createClient } from '/auth/client.js';
run(async () => {
  const logouts = [];
  const gw = createClient({ mode: 'cookie', onLogout: (e) => logouts.push(e.reason) });
  const login = await gw.login('alice', '__PASSWORD__');
  const visibleCookies = document.cookie;
  const first = await gw.fetch('/api/hello');
  const firstBody = await first.json();
  // what another site's form could do: the cookies go along, the CSRF header cannot
  const forged = await fetch('/api/hello', { method: 'POST', body: 'x' });
  const forgedBody = await forged.json();

  await sleep(login.expires_in * 1000 + 800);          // the access cookie's token expires
  await mark('burst-start');
  const methods = ['GET', 'POST', 'DELETE'];
  const burst = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    gw.fetch('/api/items/' + i, methods[i % 3] === 'GET' ? {} : { method: methods[i % 3], body: 'item ' + i })));
  const burstBodies = await Promise.all(burst.map((r) => r.json()));
  await mark('burst-end');

  const loggedOut = await gw.logout();
  const afterLogout = await gw.fetch('/api/hello');
  const plainAfterLogout = await fetch('/api/hello');
  return {
    loginBody: login, visibleCookies, accessToken: gw.accessToken,
    firstStatus: first.status, firstBody, forgedStatus: forged.status, forgedCode: forgedBody.code,
    burstStatuses: burst.map((r) => r.status), burstBodies,
    loggedOut, afterLogoutStatus: afterLogout.status, plainAfterLogoutStatus: plainAfterLogout.status,
    cookiesAfterLogout: document.cookie, logouts,
  };
});
</script>"""


async def test_cookie_mode_login_expiry_single_refresh_logout(stack):
    site, _, gateway = await stack({"cookie": COOKIE_PAGE}, lambda port: {"cookies": {"enabled": True}})
    r = await run_page_async(gateway.url + "/app/page/cookie", timeout=60)
    assert isinstance(r, dict) and "error" not in r, r

    # no token is ever visible to the page: not in the body, not in document.cookie
    assert set(r["loginBody"]) == {"token_type", "expires_in", "csrf_token"} and r["accessToken"] is None
    assert r["visibleCookies"] == "gw_csrf=" + r["loginBody"]["csrf_token"]
    assert r["firstStatus"] == 200 and r["firstBody"]["user"] == "alice"
    assert r["firstBody"]["cookie"] is None  # the gateway's cookies never reach the upstream
    assert (r["forgedStatus"], r["forgedCode"]) == (403, "csrf_failed")

    # ten parallel requests (reads and CSRF-checked writes) after expiry: one refresh, all succeed
    assert r["burstStatuses"] == [200] * 10
    assert [b["method"] for b in r["burstBodies"]] == ["GET", "POST", "DELETE", "GET", "POST", "DELETE", "GET", "POST", "DELETE", "GET"]
    burst = gateway.between("burst-start", "burst-end")
    assert gateway.hits("/auth/token/refresh", burst) == [200]
    assert sorted(e["status"] for e in burst if e["path"].startswith("/api/")) == [200] * 10 + [401] * 10

    # logout clears the cookies (the readable one included) and the next call fails
    assert r["loggedOut"] is True and r["logouts"] == ["logout"]
    assert r["afterLogoutStatus"] == 401 and r["plainAfterLogoutStatus"] == 401
    assert r["cookiesAfterLogout"] == ""
    arrived = sorted(h["method"] for h in site.api_hits)  # the forged POST never reached the upstream
    assert arrived == sorted(["GET"] + [b["method"] for b in r["burstBodies"]])


CORS_ALLOWED_PAGE = r"""<script type=module>
const GW = '__GATEWAY__';
run(async () => {
  const { createClient } = await import(GW + '/auth/client.js');      // a cross-origin module: CORS too
  // bearer session, through the gateway dialect mounted at /bearer (no cookies there)
  const gw = createClient({ baseURL: GW, loginPath: '/bearer/auth/token',
    refreshPath: '/bearer/auth/token/refresh', logoutPath: '/bearer/auth/logout' });
  const login = await gw.login('alice', '__PASSWORD__');
  const put = await gw.fetch('/api/things/1', { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{"a":1}' });
  const putBody = await put.json();
  const requestId = put.headers.get('X-Request-Id');                 // readable: an exposed header
  const anonymous = await fetch(GW + '/api/things/2');                // the 401 is readable too
  const anonymousCode = (await anonymous.json()).code;
  await gw.logout();

  // cookie session across origins: credentials allowed, CSRF header added by the client
  const c = createClient({ baseURL: GW, mode: 'cookie' });
  await c.login('alice', '__PASSWORD__');
  const cookiePost = await c.fetch('/api/things', { method: 'POST', body: 'hello' });
  const cookiePostBody = await cookiePost.json();

  // a header the gateway does not allow: the browser's preflight fails
  let badHeader = 'sent';
  try { await fetch(GW + '/api/things', { headers: { 'X-Secret': '1' } }); } catch (e) { badHeader = e.name; }
  return { hasRefresh: !!login.refresh, putStatus: put.status, putBody, requestId,
           anonymousStatus: anonymous.status, anonymousCode,
           cookiePostStatus: cookiePost.status, cookiePostBody, badHeader };
});
</script>"""

CORS_REFUSED_PAGE = r"""<script type=module>
const GW = '__GATEWAY__';
run(async () => {
  const out = {};
  const attempt = async (name, fn) => { try { await fn(); out[name] = 'sent'; } catch (e) { out[name] = e.name; } };
  await attempt('login', () => fetch(GW + '/auth/token', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                                         body: JSON.stringify({ username: 'alice', password: '__PASSWORD__' }) }));
  await attempt('simpleGet', () => fetch(GW + '/healthz'));
  await attempt('module', () => import(GW + '/auth/client.js'));
  return out;
});
</script>"""


async def test_cors_preflights_from_allowed_and_refused_origins(stack):
    pages = {"allowed": CORS_ALLOWED_PAGE, "refused": CORS_REFUSED_PAGE}
    site, server, gateway = await stack(pages, lambda port: {
        "cors": {"allow_origins": [f"http://127.0.0.1:{port}"], "allow_credentials": True},
        "cookies": {"enabled": True},
        "compat": [{"profile": "gateway", "prefix": "/bearer"}],
    })
    r = await run_page_async(f"http://127.0.0.1:{server.port}/app/page/allowed", timeout=60)
    assert isinstance(r, dict) and "error" not in r, r
    assert r["hasRefresh"] and r["putStatus"] == 200 and r["putBody"]["user"] == "alice"
    assert r["putBody"]["body"] == '{"a":1}' and r["requestId"]
    assert (r["anonymousStatus"], r["anonymousCode"]) == (401, "authentication_required")
    assert r["cookiePostStatus"] == 200 and r["cookiePostBody"]["body"] == "hello"
    assert r["badHeader"] == "TypeError"
    log = gateway.access_log()
    preflights = {(e["path"], e["status"]) for e in log if e["method"] == "OPTIONS"}
    assert {("/bearer/auth/token", 204), ("/api/things/1", 204), ("/auth/token", 204), ("/api/things", 403)} <= preflights
    assert not any(h["method"] == "OPTIONS" for h in site.api_hits)  # preflights never reach the upstream

    before = len(gateway.access_log())
    r = await run_page_async(f"http://localhost:{server.port}/app/page/refused", timeout=60)
    assert r == {"login": "TypeError", "simpleGet": "TypeError", "module": "TypeError"}, r
    refused = [(e["method"], e["path"], e["status"]) for e in gateway.access_log()[before:]]
    assert ("OPTIONS", "/auth/token", 403) in refused and ("GET", "/healthz", 403) in refused
    assert ("GET", "/auth/client.js", 403) in refused
    assert not any(m == "POST" for m, _, _ in refused)  # the login itself was never sent


AXIOS_COOKIE_PAGE = r"""<script src="/app/vendor/axios.min.js"></script>
<script type=module>
import { installGatewayCookieSession } from '/app/snippets/axios_cookie_mode.js';
run(async () => {
  const logouts = [];
  const api = axios.create({ baseURL: location.origin });
  installGatewayCookieSession(api, { onLogout: () => logouts.push('logout') });
  const login = await api.post('/auth/token', { username: 'alice', password: '__PASSWORD__' });
  const post = await api.post('/api/notes', { text: 'hi' });           // CSRF header added by axios
  await sleep(login.data.expires_in * 1000 + 800);
  await mark('burst-start');
  const burst = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    i % 2 ? api.get('/api/notes/' + i) : api.delete('/api/notes/' + i)));
  await mark('burst-end');
  await api.post('/auth/logout');
  const after = await api.get('/api/notes').then((r) => r.status, (e) => e.response.status);
  return { loginKeys: Object.keys(login.data).sort(), postStatus: post.status, postBody: post.data.body,
           statuses: burst.map((r) => r.status), after, logouts, cookies: document.cookie };
});
</script>"""


async def test_documented_axios_recipe_for_cookie_mode(stack):
    _, _, gateway = await stack({"axios": AXIOS_COOKIE_PAGE}, lambda port: {"cookies": {"enabled": True}})
    r = await run_page_async(gateway.url + "/app/page/axios", timeout=60)
    assert isinstance(r, dict) and "error" not in r, r
    assert r["loginKeys"] == ["csrf_token", "expires_in", "token_type"]
    assert r["postStatus"] == 200 and r["postBody"] == '{"text":"hi"}'
    assert r["statuses"] == [200] * 10
    assert gateway.hits("/auth/token/refresh", gateway.between("burst-start", "burst-end")) == [200]
    assert r["after"] == 401 and r["logouts"] == ["logout"] and r["cookies"] == ""
