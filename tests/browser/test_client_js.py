"""gateway/static/client.js in real headless Chromium, against a small fake token server.

The fake server (aiohttp, same event loop as the test) serves the page, client.js, token endpoints
that count refreshes, and a protected /api/data. The gateway itself is not involved here; see
test_browser_e2e.py for that.
"""
from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from harness import AXIOS_UMD, BROWSER_DIR, CLIENT_JS, run_page_async

API_DELAY = 0.03       # protected endpoint latency
REFRESH_DELAY = 0.5    # refresh latency: long enough that late requests find it in flight


@dataclass
class FakeState:
    mode: str = "bearer"
    access: set = field(default_factory=set)
    refresh: set = field(default_factory=set)
    csrf: set = field(default_factory=set)
    refresh_calls: int = 0
    refresh_bodies: list = field(default_factory=list)
    refresh_fails: bool = False
    refresh_busy: int = 0  # refreshes still to answer 503 before one succeeds
    unauthorized: int = 0
    api_ok: int = 0
    logout_calls: list = field(default_factory=list)
    foreign_auth: list = field(default_factory=list)
    csrf_rejections: int = 0


COOKIE_ATTRS = "; HttpOnly; Secure; SameSite=Strict"


def _issue(state: FakeState, resp: web.Response | None = None) -> dict:
    access, refresh = "acc-" + secrets.token_hex(8), "ref-" + secrets.token_hex(8)
    state.access.add(access)
    state.refresh.add(refresh)
    if state.mode == "cookie":
        csrf = secrets.token_hex(8)
        state.csrf.add(csrf)
        # The same attributes the gateway's cookie mode is expected to use.
        resp.headers.add("Set-Cookie", f"gw_access={access}; Path=/{COOKIE_ATTRS}")
        resp.headers.add("Set-Cookie", f"gw_refresh={refresh}; Path=/auth/token{COOKIE_ATTRS}")
        resp.headers.add("Set-Cookie", f"gw_csrf={csrf}; Path=/; Secure; SameSite=Strict")
        return {"token_type": "cookie"}
    return {"access": access, "refresh": refresh, "token_type": "Bearer"}


def _clear_cookies(resp: web.Response) -> None:
    resp.headers.add("Set-Cookie", f"gw_access=; Path=/; Max-Age=0{COOKIE_ATTRS}")
    resp.headers.add("Set-Cookie", f"gw_refresh=; Path=/auth/token; Max-Age=0{COOKIE_ATTRS}")
    resp.headers.add("Set-Cookie", "gw_csrf=; Path=/; Max-Age=0; Secure; SameSite=Strict")


def _csrf_ok(state: FakeState, request: web.Request) -> bool:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return True
    cookie = request.cookies.get("gw_csrf")
    ok = bool(cookie) and cookie in state.csrf and request.headers.get("X-CSRF-Token") == cookie
    if not ok:
        state.csrf_rejections += 1
    return ok


def _unauthorized(state: FakeState, code="token_not_valid") -> web.Response:
    state.unauthorized += 1
    return web.json_response({"detail": "unauthorized", "code": code}, status=401)


def make_app(state: FakeState, pages: dict[str, str]) -> web.Application:
    async def page(request):
        body = pages[request.match_info["name"]]
        html = ("<!doctype html><meta charset=utf-8><title>t</title>"
                "<link rel=icon href=data:,>"
                f"<script type=module>\n{PRELUDE}\n{body}\n</script>")
        return web.Response(text=html, content_type="text/html")

    async def client_js(request):
        return web.Response(body=CLIENT_JS.read_bytes(), content_type="text/javascript",
                            headers={"Cache-Control": "no-store"})

    async def axios_js(request):
        return web.Response(body=AXIOS_UMD.read_bytes(), content_type="text/javascript")

    async def axios_snippet(request):
        return web.Response(body=(BROWSER_DIR / "axios_interceptors.js").read_bytes(),
                            content_type="text/javascript")

    async def login(request):
        data = await request.json()
        if data.get("username") != "alice" or data.get("password") != "pw":
            return web.json_response({"detail": "bad credentials", "code": "invalid_credentials"}, status=401)
        resp = web.json_response({})
        resp.text = json.dumps(_issue(state, resp))
        return resp

    async def refresh(request):
        state.refresh_calls += 1
        raw = await request.read()
        state.refresh_bodies.append(raw.decode())
        await asyncio.sleep(REFRESH_DELAY)
        if state.refresh_busy > 0:
            state.refresh_busy -= 1
            return web.json_response({"detail": "The token store is unavailable", "code": "store_unavailable"},
                                     status=503, headers={"Retry-After": "1"})
        if state.refresh_fails:
            return _unauthorized(state, "token_revoked")
        resp = web.json_response({})
        if state.mode == "cookie":
            tok = request.cookies.get("gw_refresh")
            if raw or not _csrf_ok(state, request) or tok not in state.refresh:
                return _unauthorized(state)
        else:
            tok = (json.loads(raw or b"{}")).get("refresh")
            if tok not in state.refresh:
                return _unauthorized(state)
        state.refresh.discard(tok)  # rotation
        resp.text = json.dumps(_issue(state, resp))
        return resp

    async def logout(request):
        raw = await request.read()
        state.logout_calls.append({"body": raw.decode(), "auth": request.headers.get("Authorization"),
                                   "csrf": request.headers.get("X-CSRF-Token")})
        resp = web.json_response({})
        if state.mode == "cookie":
            state.refresh.discard(request.cookies.get("gw_refresh"))
            state.access.discard(request.cookies.get("gw_access"))
            _clear_cookies(resp)
        else:
            state.refresh.discard(json.loads(raw or b"{}").get("refresh"))
            auth = request.headers.get("Authorization", "")
            state.access.discard(auth.removeprefix("Bearer "))
        return resp

    async def api(request):
        if state.mode == "cookie":
            tok = request.cookies.get("gw_access")
        else:
            auth = request.headers.get("Authorization", "")
            tok = auth[7:] if auth.startswith("Bearer ") else None
        valid = tok in state.access
        # ?late=S : validated on arrival, answered S seconds later (a slow request that 401s
        # after the refresh has already completed).
        await asyncio.sleep(float(request.query.get("late", API_DELAY)))
        if not valid:
            return _unauthorized(state)
        if state.mode == "cookie" and not _csrf_ok(state, request):
            return web.json_response({"detail": "csrf", "code": "csrf_failed"}, status=403)
        state.api_ok += 1
        body = (await request.read()).decode()
        return web.json_response({"ok": True, "token": tok, "method": request.method, "body": body,
                                  "query": dict(request.query)})

    async def foreign(request):
        # Reached as another origin (localhost vs 127.0.0.1): the bearer must not be sent here.
        state.foreign_auth.append(request.headers.get("Authorization"))
        return web.json_response({"ok": True}, headers={"Access-Control-Allow-Origin": "*"})

    async def expire(request):
        state.access.clear()
        return web.json_response({})

    async def break_refresh(request):
        state.refresh_fails = True
        return web.json_response({})

    async def busy_refresh(request):
        state.refresh_busy = int(request.query.get("n", "2"))
        return web.json_response({})

    async def stats(request):
        return web.json_response({
            "refresh_calls": state.refresh_calls, "unauthorized": state.unauthorized,
            "api_ok": state.api_ok, "refresh_bodies": state.refresh_bodies,
            "logout_calls": state.logout_calls, "foreign_auth": state.foreign_auth,
            "csrf_rejections": state.csrf_rejections,
        })

    app = web.Application()
    app.router.add_get("/page/{name}", page)
    app.router.add_get("/client.js", client_js)
    app.router.add_get("/axios.min.js", axios_js)
    app.router.add_get("/axios_interceptors.js", axios_snippet)
    app.router.add_post("/auth/token", login)
    app.router.add_post("/auth/token/refresh", refresh)
    app.router.add_post("/auth/logout", logout)
    app.router.add_route("*", "/api/data", api)
    app.router.add_get("/foreign", foreign)
    app.router.add_post("/_test/expire", expire)
    app.router.add_post("/_test/break-refresh", break_refresh)
    app.router.add_post("/_test/busy-refresh", busy_refresh)
    app.router.add_get("/_test/stats", stats)
    return app


# Shared by every page: helpers, and any exception becomes the page's result.
PRELUDE = r"""
window.addEventListener('unhandledrejection', (e) => {
  if (window.__result === undefined) window.__result = { error: 'unhandledrejection: ' + (e.reason && e.reason.stack || e.reason) };
});
const post = (p) => fetch(p, { method: 'POST' });
const stats = async () => (await fetch('/_test/stats')).json();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
window.run = async (fn) => {
  try { window.__result = await fn(); }
  catch (e) { window.__result = { error: String(e && e.stack || e) }; }
};
"""

BEARER_PARALLEL = r"""
import { createClient } from '/client.js';
run(async () => {
  const logouts = [];
  const c = createClient({ baseURL: location.origin, onLogout: (e) => logouts.push(e.reason) });
  await c.login('alice', 'pw');
  const tokenAfterLogin = c.accessToken;
  const first = await c.fetch('/api/data');
  const firstBody = await first.json();
  await post('/_test/expire');
  const before = await stats();
  // ten parallel requests, half of them POSTs with a JSON body that must survive the retry,
  // one of them passed as a Request object
  const reqs = Array.from({ length: 10 }, (_, i) => {
    if (i === 9) return c.fetch(new Request(location.origin + '/api/data?i=9', { method: 'POST', body: 'req-9' }));
    return i % 2
      ? c.fetch('/api/data?i=' + i)
      : c.fetch('/api/data?i=' + i, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ i }) });
  });
  const res = await Promise.all(reqs);
  const bodies = await Promise.all(res.map((r) => r.json()));
  const after = await stats();
  return {
    tokenAfterLogin, firstStatus: first.status, firstToken: firstBody.token,
    statuses: res.map((r) => r.status), bodies, newToken: c.accessToken,
    refreshesBefore: before.refresh_calls, refreshesAfter: after.refresh_calls,
    unauthorized: after.unauthorized - before.unauthorized, refreshBodies: after.refresh_bodies,
    logouts,
  };
});
"""

BEARER_LATE_AND_QUEUED = r"""
import { createClient } from '/client.js';
run(async () => {
  const c = createClient({ baseURL: location.origin });
  await c.login('alice', 'pw');
  await post('/_test/expire');
  const before = await stats();
  // a slow request sent with the old token; its 401 arrives after the refresh completed
  const late = c.fetch('/api/data?late=1.5');
  const burst = Array.from({ length: 5 }, (_, i) => c.fetch('/api/data?b=' + i));
  // wait until the burst has failed and the refresh (500 ms at the server) is in flight
  while ((await stats()).refresh_calls === before.refresh_calls) await sleep(10);
  const queued = c.fetch('/api/data?queued=1');   // must wait for the refresh, not 401
  const res = await Promise.all([late, ...burst, queued]);
  const after = await stats();
  return {
    statuses: res.map((r) => r.status),
    refreshes: after.refresh_calls - before.refresh_calls,
    unauthorized: after.unauthorized - before.unauthorized,
  };
});
"""

BEARER_REFRESH_FAILS = r"""
import { createClient } from '/client.js';
run(async () => {
  const logouts = [];
  const c = createClient({ baseURL: location.origin, onLogout: (e) => logouts.push(e.reason) });
  await c.login('alice', 'pw');
  await post('/_test/expire');
  await post('/_test/break-refresh');
  const before = await stats();
  const res = await Promise.all(Array.from({ length: 10 }, (_, i) => c.fetch('/api/data?i=' + i)));
  const bodies = await Promise.all(res.map((r) => r.json()));
  const mid = await stats();
  const again = await c.fetch('/api/data');   // no token any more: plain 401, no refresh attempt
  const after = await stats();
  return {
    statuses: res.map((r) => r.status), codes: bodies.map((b) => b.code),
    refreshes: mid.refresh_calls - before.refresh_calls,
    refreshesAfterLogout: after.refresh_calls - mid.refresh_calls,
    againStatus: again.status, logouts,
    accessToken: c.accessToken, refreshToken: c.refreshToken,
  };
});
"""

BEARER_REFRESH_BUSY = r"""
import { createClient } from '/client.js';
run(async () => {
  const logouts = [];
  const c = createClient({ baseURL: location.origin, onLogout: (e) => logouts.push(e.reason) });
  await c.login('alice', 'pw');
  const before = await stats();
  await post('/_test/expire');
  await post('/_test/busy-refresh?n=' + new URLSearchParams(location.search).get('n'));
  const res = await Promise.all(Array.from({ length: 3 }, (_, i) => c.fetch('/api/data?i=' + i)));
  const after = await stats();
  return {
    statuses: res.map((r) => r.status), refreshes: after.refresh_calls - before.refresh_calls,
    logouts, hasToken: c.accessToken !== null,
  };
});
"""

BEARER_MISC = r"""
import { createClient, localStorageAdapter, AuthError } from '/client.js';
run(async () => {
  localStorage.clear();
  const logouts = [];
  const storage = localStorageAdapter('gwtest_');
  const c = createClient({ baseURL: location.origin, storage, onLogout: (e) => logouts.push(e.reason) });
  let badLogin = null;
  try { await c.login('alice', 'wrong'); } catch (e) { badLogin = { isAuthError: e instanceof AuthError, status: e.status, code: e.body && e.body.code }; }
  await c.login('alice', 'pw');
  const stored = { access: localStorage.getItem('gwtest_access'), refresh: localStorage.getItem('gwtest_refresh') };
  // a second client on the same storage (a reload, another tab) is logged in too
  const c2 = createClient({ baseURL: location.origin, storage: localStorageAdapter('gwtest_') });
  const viaSecond = (await c2.fetch('/api/data')).status;
  // the bearer is never sent to another origin
  const foreignOrigin = location.origin.replace('127.0.0.1', 'localhost');
  const foreign = (await c.fetch(foreignOrigin + '/foreign')).status;
  // login endpoint itself is never retried / refreshed: a 401 there is returned as is
  const anonymous = createClient({ baseURL: location.origin });
  const anonStatus = (await anonymous.fetch('/api/data')).status;
  const beforeLogout = await stats();
  const out = await c.logout();
  const afterLogout = await c.fetch('/api/data');
  const after = await stats();
  return {
    badLogin, stored, viaSecond, foreign, anonStatus, logoutOk: out,
    afterLogoutStatus: afterLogout.status,
    refreshesAroundLogout: after.refresh_calls - beforeLogout.refresh_calls,
    storedAfterLogout: { access: localStorage.getItem('gwtest_access'), refresh: localStorage.getItem('gwtest_refresh') },
    logoutCall: after.logout_calls[after.logout_calls.length - 1],
    foreignAuth: after.foreign_auth, logouts,
  };
});
"""

COOKIE_MODE = r"""
import { createClient } from '/client.js';
run(async () => {
  const logouts = [];
  const c = createClient({ baseURL: location.origin, mode: 'cookie', onLogout: (e) => logouts.push(e.reason) });
  const loginBody = await c.login('alice', 'pw');
  const visibleCookies = document.cookie;
  const first = await c.fetch('/api/data');
  const postOk = await c.fetch('/api/data', { method: 'POST', body: 'hello' });
  // the same POST without the client (no CSRF header) is refused by the server
  const noCsrf = await fetch('/api/data', { method: 'POST', body: 'x', credentials: 'include' });
  await post('/_test/expire');
  const before = await stats();
  const res = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    i % 2 ? c.fetch('/api/data?i=' + i) : c.fetch('/api/data?i=' + i, { method: 'DELETE' })));
  const bodies = await Promise.all(res.map((r) => r.json()));
  const after = await stats();
  await c.logout();
  const afterLogout = await c.fetch('/api/data');
  const end = await stats();
  return {
    loginBody, accessToken: c.accessToken, visibleCookies,
    firstStatus: first.status, postStatus: postOk.status, noCsrfStatus: noCsrf.status,
    statuses: res.map((r) => r.status), methods: bodies.map((b) => b.method),
    refreshes: after.refresh_calls - before.refresh_calls,
    refreshBody: after.refresh_bodies[after.refresh_bodies.length - 1],
    csrfRejectionsDuringBurst: after.csrf_rejections - before.csrf_rejections,
    logoutCall: end.logout_calls[end.logout_calls.length - 1],
    afterLogoutStatus: afterLogout.status,
    cookiesAfterLogout: document.cookie, logouts,
  };
});
"""

AXIOS_SNIPPET = r"""
await new Promise((ok, fail) => {
  const s = document.createElement('script'); s.src = '/axios.min.js'; s.onload = ok; s.onerror = fail;
  document.head.append(s);
});
const { installGatewayRefresh } = await import('/axios_interceptors.js');
run(async () => {
  localStorage.clear();
  const logouts = [];
  const api = axios.create({ baseURL: location.origin });
  installGatewayRefresh(axios, api, { onLogout: () => logouts.push('x') });
  await api.post('/auth/token', { username: 'alice', password: 'pw' });
  const first = (await api.get('/api/data')).status;
  const t0 = localStorage.getItem('access_token');
  await post('/_test/expire');
  const s0 = await stats();
  const res = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    i % 2 ? api.get('/api/data?i=' + i) : api.post('/api/data?i=' + i, { i })));
  const s1 = await stats();
  const t1 = localStorage.getItem('access_token');
  await post('/_test/expire');
  await post('/_test/break-refresh');
  const failed = await Promise.allSettled(Array.from({ length: 5 }, () => api.get('/api/data')));
  const s2 = await stats();
  return {
    first, statuses: res.map((r) => r.status), bodies: res.map((r) => r.data.body),
    tokens: res.map((r) => r.data.token === t1),
    changed: t0 !== t1,
    refreshes: s1.refresh_calls - s0.refresh_calls,
    failed: failed.map((f) => f.status === 'rejected' && f.reason.response.status),
    refreshesOnFailure: s2.refresh_calls - s1.refresh_calls,
    logouts, cleared: localStorage.getItem('access_token') === null,
  };
});
"""

PAGES = {
    "axios-snippet": AXIOS_SNIPPET,
    "bearer-parallel": BEARER_PARALLEL,
    "bearer-late": BEARER_LATE_AND_QUEUED,
    "bearer-refresh-fails": BEARER_REFRESH_FAILS,
    "bearer-refresh-busy": BEARER_REFRESH_BUSY,
    "bearer-misc": BEARER_MISC,
    "cookie": COOKIE_MODE,
}


@pytest.fixture
async def fake(aiohttp_server, browser_env):
    async def start(mode="bearer"):
        state = FakeState(mode=mode)
        server = await aiohttp_server(make_app(state, PAGES), host="127.0.0.1")
        return state, server
    return start


def _ok(result):
    assert isinstance(result, dict), result
    assert "error" not in result, result["error"]
    return result


async def test_ten_parallel_requests_after_expiry_trigger_one_refresh(fake):
    state, server = await fake()
    r = _ok(await run_page_async(str(server.make_url("/page/bearer-parallel"))))
    assert r["firstStatus"] == 200 and r["firstToken"] == r["tokenAfterLogin"]
    assert r["refreshesBefore"] == 0
    assert r["refreshesAfter"] == 1, r
    assert r["unauthorized"] == 10
    assert r["statuses"] == [200] * 10
    assert r["newToken"] != r["tokenAfterLogin"]
    assert all(b["token"] == r["newToken"] for b in r["bodies"])
    # bodies were replayed on the retry
    assert [b["body"] for b in r["bodies"][0:9:2]] == [json.dumps({"i": i}, separators=(",", ":")) for i in range(0, 9, 2)]
    assert r["bodies"][9] == {**r["bodies"][9], "method": "POST", "body": "req-9"}
    assert json.loads(r["refreshBodies"][0])["refresh"].startswith("ref-")
    assert r["logouts"] == []


async def test_late_401_and_requests_started_during_refresh_do_not_refresh_again(fake):
    state, server = await fake()
    r = _ok(await run_page_async(str(server.make_url("/page/bearer-late"))))
    assert r["statuses"] == [200] * 7
    assert r["refreshes"] == 1
    # the late request and the 5-request burst got a 401; the queued one never did
    assert r["unauthorized"] == 6


async def test_refresh_failure_clears_state_and_calls_on_logout_once(fake):
    state, server = await fake()
    r = _ok(await run_page_async(str(server.make_url("/page/bearer-refresh-fails"))))
    assert r["statuses"] == [401] * 10
    assert r["codes"] == ["token_not_valid"] * 10  # the original responses are returned
    assert r["refreshes"] == 1
    assert r["logouts"] == ["refresh_failed"]
    assert r["accessToken"] is None and r["refreshToken"] is None
    assert r["againStatus"] == 401 and r["refreshesAfterLogout"] == 0


async def test_a_refresh_answered_503_is_retried_with_bounded_back_off(fake):
    state, server = await fake()
    r = _ok(await run_page_async(str(server.make_url("/page/bearer-refresh-busy?n=2"))))
    assert r["statuses"] == [200] * 3 and r["refreshes"] == 3  # two 503s, then the refresh went through
    assert r["logouts"] == [] and r["hasToken"]
    state, server = await fake()
    r = _ok(await run_page_async(str(server.make_url("/page/bearer-refresh-busy?n=10"))))
    assert r["statuses"] == [401] * 3 and r["refreshes"] == 4  # gave up after 3 retries, still signed in
    assert r["logouts"] == [] and r["hasToken"]


async def test_storage_foreign_origins_and_logout(fake):
    state, server = await fake()
    r = _ok(await run_page_async(str(server.make_url("/page/bearer-misc"))))
    assert r["badLogin"] == {"isAuthError": True, "status": 401, "code": "invalid_credentials"}
    assert r["stored"]["access"].startswith("acc-") and r["stored"]["refresh"].startswith("ref-")
    assert r["viaSecond"] == 200
    assert r["foreign"] == 200 and r["foreignAuth"] == [None]
    assert r["anonStatus"] == 401
    assert r["logoutOk"] is True
    assert r["logoutCall"]["auth"] == "Bearer " + r["stored"]["access"]
    assert json.loads(r["logoutCall"]["body"]) == {"refresh": r["stored"]["refresh"]}
    assert r["storedAfterLogout"] == {"access": None, "refresh": None}
    assert r["afterLogoutStatus"] == 401 and r["refreshesAroundLogout"] == 0
    assert r["logouts"] == ["logout"]


async def test_cookie_mode_double_submit_and_single_refresh(fake):
    state, server = await fake("cookie")
    r = _ok(await run_page_async(str(server.make_url("/page/cookie"))))
    assert r["accessToken"] is None
    assert "acc-" not in r["visibleCookies"] and "ref-" not in r["visibleCookies"]
    assert "gw_csrf=" in r["visibleCookies"]
    assert (r["firstStatus"], r["postStatus"], r["noCsrfStatus"]) == (200, 200, 403)
    assert r["statuses"] == [200] * 10
    assert r["methods"] == ["DELETE", "GET"] * 5
    assert r["refreshes"] == 1
    assert r["refreshBody"] == ""
    assert r["csrfRejectionsDuringBurst"] == 0
    assert r["logoutCall"]["body"] == "" and r["logoutCall"]["csrf"]
    assert r["afterLogoutStatus"] == 401
    assert "gw_csrf" not in r["cookiesAfterLogout"]
    assert r["logouts"] == ["logout"]


async def test_documented_axios_interceptors_behave_the_same(fake):
    state, server = await fake()
    r = _ok(await run_page_async(str(server.make_url("/page/axios-snippet"))))
    assert r["first"] == 200
    assert r["statuses"] == [200] * 10 and all(r["tokens"]) and r["changed"]
    assert r["bodies"][0::2] == [json.dumps({"i": i}, separators=(",", ":")) for i in range(0, 10, 2)]
    assert r["refreshes"] == 1
    assert r["failed"] == [401] * 5 and r["refreshesOnFailure"] == 1
    assert r["logouts"] == ["x"] and r["cleared"]
