// Gateway browser client: a dependency-free ES module served at GET /auth/client.js.
//
//   import { createClient } from '/auth/client.js';
//   const gw = createClient({ baseURL: 'https://gw.example.com', onLogout: () => location.assign('/login') });
//   await gw.login('alice', 'secret');
//   const res = await gw.fetch('/api/orders');          // same signature as window.fetch
//
// What it does:
// * bearer mode (default): keeps the access and refresh token in `storage` (in memory unless you
//   pass `storage: localStorageAdapter()`), attaches `Authorization: Bearer <access>` to requests
//   that go to the gateway's origin (never to third-party origins).
// * cookie mode (`mode: 'cookie'`): the gateway keeps the tokens in HttpOnly cookies; this module
//   stores no token at all, sends every gateway request with `credentials: 'include'`, refreshes by
//   POSTing an empty body (the cookie carries the refresh token), and adds the double-submit CSRF
//   header (`csrfHeader`, value copied from the readable `csrfCookie`) to state-changing requests.
// * a 401 from the gateway triggers exactly one refresh however many requests failed at once
//   (single-flight promise); requests that fail or start while it runs wait for it, then each is
//   retried once. A request that failed with a token older than the current one is simply
//   retried. If the gateway refuses the refresh (4xx), state is cleared, `onLogout` is called once
//   and the waiting requests resolve with their original 401 response. A network error or 5xx
//   during refresh does not log the user out: the 401 responses are returned as they are. A refresh
//   answered 503 is retried up to 3 times with back-off (0.5 s, 1 s, 2 s, or Retry-After up to 2 s).
// * login/refresh/logout endpoints are never retried.

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
const REFRESH_RETRIES = [500, 1000, 2000]; // ms before each retry of a refresh answered 503 (about 3.5 s in all)
const REFRESH_RETRY_CAP = 2000;            // ms: a longer Retry-After is not waited for
const ACCESS_KEY = 'access';
const REFRESH_KEY = 'refresh';

/** In-memory storage (the default). Tokens vanish on page reload. */
export function memoryStorage() {
  const m = new Map();
  return {
    get: (k) => (m.has(k) ? m.get(k) : null),
    set: (k, v) => { m.set(k, v); },
    remove: (k) => { m.delete(k); },
  };
}

/**
 * Adapter over a Web Storage object (localStorage by default). Survives reloads and is shared
 * between tabs; readable by any script on the origin, so prefer cookie mode where you can.
 */
export function localStorageAdapter(prefix = 'gw_', store = globalThis.localStorage) {
  return {
    get: (k) => store.getItem(prefix + k),
    set: (k, v) => store.setItem(prefix + k, v),
    remove: (k) => store.removeItem(prefix + k),
  };
}

function normalizeStorage(s) {
  if (!s) return memoryStorage();
  if (typeof s.get === 'function' && typeof s.set === 'function') {
    return {
      get: (k) => s.get(k) ?? null,
      set: (k, v) => s.set(k, v),
      remove: typeof s.remove === 'function' ? (k) => s.remove(k) : (k) => s.set(k, null),
    };
  }
  if (typeof s.getItem === 'function') return localStorageAdapter('gw_', s); // a raw Web Storage
  throw new TypeError('storage must provide get/set/remove or getItem/setItem/removeItem');
}

/** Error thrown by login() (and by refresh() when called directly). */
export class AuthError extends Error {
  constructor(message, status = 0, body = null) {
    super(message);
    this.name = 'AuthError';
    this.status = status;
    this.body = body;
  }
}

function readCookie(name) {
  if (typeof document === 'undefined' || !document.cookie) return null;
  for (const part of document.cookie.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) {
      try { return decodeURIComponent(part.slice(i + 1).trim()); } catch { return part.slice(i + 1).trim(); }
    }
  }
  return null;
}

async function readJSON(res) {
  try { return await res.json(); } catch { return null; }
}

export function createClient(options = {}) {
  const {
    baseURL = (typeof location !== 'undefined' ? location.origin : ''),
    loginPath = '/auth/token',
    refreshPath = '/auth/token/refresh',
    logoutPath = '/auth/logout',
    mode = 'bearer',
    csrfCookie = 'gw_csrf',
    csrfHeader = 'X-CSRF-Token',
    onLogout = null,
    fetch: baseFetch = globalThis.fetch.bind(globalThis),
  } = options;
  if (mode !== 'bearer' && mode !== 'cookie') throw new TypeError(`mode must be 'bearer' or 'cookie', got ${mode}`);
  const cookieMode = mode === 'cookie';
  const storage = normalizeStorage(options.storage);

  const pageBase = typeof location !== 'undefined' ? location.href : undefined;
  const base = new URL(baseURL || '/', pageBase);
  const basePath = base.pathname.replace(/\/+$/, '');
  const gatewayOrigin = base.origin;

  let generation = 0;          // bumped on every successful refresh/login (cookie mode's "token")
  let refreshing = null;       // the single in-flight refresh promise
  let csrfFromBody = null;     // fallback when the CSRF cookie is not readable (other site)

  const endpoint = (p) => (/^[a-z][a-z0-9+.-]*:/i.test(p) ? p : base.origin + basePath + (p.startsWith('/') ? p : '/' + p));
  const authURLs = new Set([loginPath, refreshPath, logoutPath].map((p) => new URL(endpoint(p)).href.split('?')[0]));

  function resolve(input) {
    if (typeof input === 'string' && !/^[a-z][a-z0-9+.-]*:/i.test(input) && !input.startsWith('//')) {
      return endpoint(input);
    }
    return input;
  }

  const getAccess = () => (cookieMode ? null : storage.get(ACCESS_KEY));
  const getRefresh = () => (cookieMode ? null : storage.get(REFRESH_KEY));
  const stamp = () => (cookieMode ? generation : getAccess());

  function storeTokens(data) {
    if (data && typeof data === 'object') {
      const csrf = data.csrf ?? data.csrf_token ?? data.csrfToken;
      if (typeof csrf === 'string') csrfFromBody = csrf;
    }
    generation += 1;
    if (cookieMode || !data) return;
    const access = data.access ?? data.access_token;
    const refresh = data.refresh ?? data.refresh_token;
    if (access) storage.set(ACCESS_KEY, access);
    if (refresh) storage.set(REFRESH_KEY, refresh);
  }

  function clearState() {
    storage.remove(ACCESS_KEY);
    storage.remove(REFRESH_KEY);
    csrfFromBody = null;
    generation += 1;
  }

  let logoutNotified = false;
  function notifyLogout(reason) {
    if (logoutNotified) return;
    logoutNotified = true;
    if (typeof onLogout === 'function') {
      try { onLogout({ reason }); } catch (e) { setTimeout(() => { throw e; }); }
    }
  }

  function csrfValue() {
    return readCookie(csrfCookie) ?? csrfFromBody;
  }

  // Builds the Request for one attempt (the template is cloned so its body can be replayed).
  function prepare(template) {
    const headers = new Headers(template.headers);
    const toGateway = new URL(template.url).origin === gatewayOrigin;
    if (toGateway) {
      const access = getAccess();
      if (access && !headers.has('Authorization')) headers.set('Authorization', `Bearer ${access}`);
      if (cookieMode && !SAFE_METHODS.has(template.method.toUpperCase()) && !headers.has(csrfHeader)) {
        const csrf = csrfValue();
        if (csrf) headers.set(csrfHeader, csrf);
      }
    }
    const init = { headers };
    if (toGateway && cookieMode) init.credentials = 'include';
    return new Request(template.clone(), init);
  }

  async function authPost(path, body, extraHeaders = {}) {
    const headers = new Headers(extraHeaders);
    headers.set('Accept', 'application/json');
    const init = { method: 'POST', headers, credentials: cookieMode ? 'include' : 'same-origin' };
    if (body !== undefined) {
      headers.set('Content-Type', 'application/json');
      init.body = JSON.stringify(body);
    }
    if (cookieMode) {
      const csrf = csrfValue();
      if (csrf) headers.set(csrfHeader, csrf);
    }
    return baseFetch(endpoint(path), init);
  }

  // A refresh answered 503 (the token store was briefly unavailable) was not applied: it is retried
  // with the same token after a bounded back-off (Retry-After, capped), well inside the gateway's
  // refresh_grace, so a retry of a refresh that did go through gets the same pair back.
  async function doRefresh() {
    let res;
    for (let attempt = 0; ; attempt++) {
      if (cookieMode) {
        res = await authPost(refreshPath, undefined);
      } else {
        const refresh = getRefresh();
        if (!refresh) throw new AuthError('no refresh token', 401);
        res = await authPost(refreshPath, { refresh });
      }
      if (res.status !== 503 || attempt >= REFRESH_RETRIES.length) break;
      const hinted = Number(res.headers.get('Retry-After')) * 1000;
      const pause = Math.min(Number.isFinite(hinted) && hinted > 0 ? hinted : REFRESH_RETRIES[attempt], REFRESH_RETRY_CAP);
      await new Promise((resolve) => setTimeout(resolve, pause * (0.75 + Math.random() / 2)));
    }
    const data = await readJSON(res);
    if (!res.ok) throw new AuthError(`refresh failed: HTTP ${res.status}`, res.status, data);
    storeTokens(data);
    return data;
  }

  // Single flight: every caller during a refresh gets the same promise. With shared storage
  // (localStorage) the Web Locks API also serialises refreshes across tabs; a tab that waited
  // for the lock re-checks whether another tab already rotated the tokens.
  function refresh(failedStamp = stamp()) {
    if (!refreshing) {
      const run = async () => {
        if (failedStamp !== stamp()) return null; // somebody refreshed meanwhile
        return doRefresh();
      };
      const locks = typeof navigator !== 'undefined' && navigator.locks && options.storage ? navigator.locks : null;
      const p = locks ? locks.request('gw-client-refresh', run) : run();
      refreshing = p.finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  // Returns true when the request should be retried, false when its 401 must be returned.
  async function recover(failedStamp) {
    if (!cookieMode && failedStamp !== stamp() && getAccess()) return true; // already refreshed
    if (!cookieMode && !getRefresh()) {
      if (failedStamp) { clearState(); notifyLogout('no_refresh_token'); }
      return false;
    }
    try {
      await refresh(failedStamp);
      return true;
    } catch (err) {
      const definitive = err instanceof AuthError && err.status >= 400 && err.status < 500;
      if (definitive) {
        clearState();
        notifyLogout('refresh_failed');
      }
      return false;
    }
  }

  async function clientFetch(input, init) {
    const template = new Request(resolve(input), init);
    const isAuthEndpoint = authURLs.has(template.url.split('?')[0]);
    const toGateway = new URL(template.url).origin === gatewayOrigin;

    if (refreshing && toGateway && !isAuthEndpoint) {
      try { await refreshing; } catch { /* handled by whoever started it */ }
    }
    const sentWith = stamp();
    const res = await baseFetch(prepare(template));
    if (res.status !== 401 || !toGateway || isAuthEndpoint) return res;
    if (!cookieMode && !sentWith && !getRefresh()) return res; // anonymous request, nothing to refresh
    if (cookieMode && logoutNotified) return res;                // session ended; wait for login()
    if (!(await recover(sentWith))) return res;
    return baseFetch(prepare(template));
  }

  async function login(username, password, extra = {}) {
    const res = await authPost(loginPath, { username, password, ...extra });
    const data = await readJSON(res);
    if (!res.ok) {
      throw new AuthError((data && (data.detail || data.message)) || `login failed: HTTP ${res.status}`, res.status, data);
    }
    logoutNotified = false;
    if (!cookieMode) clearState();
    storeTokens(data);
    return data;
  }

  async function logout() {
    let res = null;
    try {
      if (refreshing) { try { await refreshing; } catch { /* ignore */ } }
      if (cookieMode) {
        res = await authPost(logoutPath, undefined);
      } else {
        const access = getAccess();
        const refreshTok = getRefresh();
        if (access || refreshTok) {
          res = await authPost(logoutPath, refreshTok ? { refresh: refreshTok } : {},
            access ? { Authorization: `Bearer ${access}` } : {});
        }
      }
    } catch {
      // network failure: the local state is cleared anyway
    } finally {
      clearState();
      notifyLogout('logout');
    }
    return res ? res.ok : false;
  }

  return {
    login,
    logout,
    fetch: clientFetch,
    refresh: () => refresh(stamp()),
    get accessToken() { return getAccess(); },
    get refreshToken() { return getRefresh(); },
    get mode() { return mode; },
  };
}

export default createClient;
