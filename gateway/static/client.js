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
// * second factor (docs/second-factor.md): when the password is right but the user must also give a
//   code, login() throws SecondFactorRequired (an AuthError) with `mfaToken`, `methods` and
//   `expiresIn`; finish with `await gw.completeSecondFactor(err.mfaToken, { code })` (or
//   `{ recoveryCode }`), which answers and stores exactly as login() does. With an authenticator:
//   `await gw.completeWithWebAuthn(err)` (navigator.credentials.get with the 401's options);
//   `gw.addAuthenticator(name)` registers one, `gw.loginWithPasskey()` is a passkey login.
// * step-up (RFC 9470): a 401 whose WWW-Authenticate says insufficient_user_authentication is
//   returned as it is, never "refreshed" (a refresh keeps how and when the user logged in); the
//   optional `onStepUp({ response, acrValues, maxAge })` is told, to send the user to log in again
//   with the factor the route asks for, or to re-verify a factor in this session:
//   `await gw.stepUp({ code })` (or `{ recoveryCode }`, or `{ webauthn: true }`: navigator.credentials.get
//   with a challenge of the gateway's step-up) stores the fresh access token (cookie mode: the gateway
//   sets the cookie); then retry the request. For a session of an identity provider, `step_up_url`
//   in the refusal's JSON names the gateway's /auth/oidc/step-up: `await gw.stepUpAtProvider(url)`
//   goes back to the provider (bearer mode: tokens in a storage that outlives the navigation).
// * sign-in through an identity provider (docs/frontends.md#sign-in-through-an-identity-provider):
//     gw.login('corp')                        // or gw.login('corp', { next: '/orders', deliver: 'code' })
//   navigates to the gateway's /auth/oidc/<provider>/login. In bearer mode it asks for `deliver=code`:
//   the gateway comes back to `next#gateway_code=<one-time code>`; createClient() takes the code out of
//   the URL at once (history.replaceState), exchanges it at POST /auth/oidc/exchange and stores the
//   tokens exactly as login(user, password) does; only in a tab that started that sign-in itself
//   (login(provider) or loginURL(), remembered in sessionStorage for 15 minutes), never for a code
//   that arrived in a link from elsewhere. Requests made meanwhile wait for the exchange;
//   `await gw.completeLogin()` says how it went. In cookie mode the gateway sets its cookies itself.
//   logout() after such a sign-in uses POST /auth/oidc/logout and, when the gateway answers an
//   `end_session_url` (the provider's logout), navigates there.

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
const REFRESH_RETRIES = [500, 1000, 2000]; // ms before each retry of a refresh answered 503 (about 3.5 s in all)
const REFRESH_RETRY_CAP = 2000;            // ms: a longer Retry-After is not waited for
const ACCESS_KEY = 'access';
const REFRESH_KEY = 'refresh';
const CODE_PARAM = 'gateway_code';
const PROVIDER_MARK = 'gw_oidc_provider'; // sessionStorage: this tab signed in through a provider
const PENDING_MARK = 'gw_oidc_pending';    // sessionStorage: when this tab last started a provider sign-in (ms)
const PENDING_LIFETIME = 15 * 60 * 1000;   // a code arriving later than this after the start is not taken

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

/** Thrown by login() when the password was right and a second factor is due: see completeSecondFactor(). */
export class SecondFactorRequired extends AuthError {
  constructor(body, status = 401) {
    super(body.detail || 'a second factor is required', status, body);
    this.name = 'SecondFactorRequired';
    this.mfaToken = body.mfa_token;
    this.methods = Array.isArray(body.methods) ? body.methods : [];
    this.expiresIn = body.expires_in;
    this.webauthn = body.webauthn || null; // PublicKeyCredentialRequestOptions (JSON) when methods has 'webauthn'
  }
}

// -- WebAuthn (docs/second-factor.md#webauthn-for-frontend-developers) -------------------------------
// The gateway sends options as JSON with binary fields base64url-encoded, and reads the browser's
// PublicKeyCredential back in the same shape (the `webauthn` library's JSON form).

export function base64urlToBytes(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out.buffer;
}

export function bytesToBase64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let raw = '';
  for (let i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
  return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const withIds = (list) => (list || []).map((c) => ({ ...c, id: base64urlToBytes(c.id) }));

/** The server's JSON creation options as navigator.credentials.create() wants them. */
export function creationOptions(json) {
  return { ...json, challenge: base64urlToBytes(json.challenge), user: { ...json.user, id: base64urlToBytes(json.user.id) },
           excludeCredentials: withIds(json.excludeCredentials) };
}

/** The server's JSON request options as navigator.credentials.get() wants them. */
export function requestOptions(json) {
  return { ...json, challenge: base64urlToBytes(json.challenge), allowCredentials: withIds(json.allowCredentials) };
}

/** A PublicKeyCredential (create or get) as the JSON the gateway verifies. */
export function credentialToJSON(cred) {
  const r = cred.response;
  const response = { clientDataJSON: bytesToBase64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bytesToBase64url(r.attestationObject);
    if (typeof r.getTransports === 'function') response.transports = r.getTransports();
  }
  if (r.authenticatorData) response.authenticatorData = bytesToBase64url(r.authenticatorData);
  if (r.signature) response.signature = bytesToBase64url(r.signature);
  if (r.userHandle) response.userHandle = bytesToBase64url(r.userHandle);
  return { id: cred.id, rawId: bytesToBase64url(cred.rawId), type: cred.type, response,
           authenticatorAttachment: cred.authenticatorAttachment ?? undefined,
           clientExtensionResults: typeof cred.getClientExtensionResults === 'function' ? cred.getClientExtensionResults() : {} };
}

const STEP_UP = /error="insufficient_user_authentication"/;

function challengeParam(header, name) {
  const m = new RegExp(`${name}="?([^",]*)"?`).exec(header);
  return m ? m[1] : null;
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

function tabStorage() {
  try { return globalThis.sessionStorage ?? null; } catch { return null; } // may throw when storage is blocked
}

// Takes `gateway_code=...` out of the page's fragment (keeping any other fragment parts) and returns it.
function takeFragmentCode() {
  if (typeof location === 'undefined' || !location.hash || !location.hash.includes(`${CODE_PARAM}=`)) return null;
  const parts = location.hash.slice(1).split('&');
  const code = parts.find((p) => p.startsWith(`${CODE_PARAM}=`));
  const rest = parts.filter((p) => !p.startsWith(`${CODE_PARAM}=`)).join('&');
  const clean = location.pathname + location.search + (rest ? `#${rest}` : '');
  if (typeof history !== 'undefined' && history.replaceState) history.replaceState(history.state, '', clean);
  try { return decodeURIComponent(code.slice(CODE_PARAM.length + 1)) || null; } catch { return null; }
}

// True once per started sign-in: a code in the URL is only exchanged by a tab that asked for one, so a
// link carrying somebody else's code cannot sign this browser in as them (login CSRF).
function claimPending() {
  const store = tabStorage();
  if (!store) return false;
  const started = Number(store.getItem(PENDING_MARK));
  store.removeItem(PENDING_MARK);
  return Number.isFinite(started) && started > 0 && Date.now() - started < PENDING_LIFETIME;
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
    oidcPath = '/auth/oidc',
    mfaPath = '/auth/mfa',
    credentials: webCredentials = (typeof navigator !== 'undefined' ? navigator.credentials : undefined),
    handleRedirect = true,
    navigate = (url) => { location.assign(url); },
    mode = 'bearer',
    csrfCookie = 'gw_csrf',
    csrfHeader = 'X-CSRF-Token',
    onLogout = null,
    onStepUp = null,
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
  const exchangePath = `${oidcPath}/exchange`;
  const oidcLogoutPath = `${oidcPath}/logout`;
  const authURLs = new Set([loginPath, refreshPath, logoutPath, exchangePath, oidcLogoutPath]
    .map((p) => new URL(endpoint(p)).href.split('?')[0]));

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

    if (exchanging && toGateway && !isAuthEndpoint) {
      try { await exchanging; } catch { /* completeLogin() reports it */ }
    }
    if (refreshing && toGateway && !isAuthEndpoint) {
      try { await refreshing; } catch { /* handled by whoever started it */ }
    }
    const sentWith = stamp();
    const res = await baseFetch(prepare(template));
    if (res.status !== 401 || !toGateway || isAuthEndpoint) return res;
    const challenge = res.headers.get('WWW-Authenticate') || '';
    if (STEP_UP.test(challenge)) { // a refresh keeps amr and auth_time: only a new login helps
      if (typeof onStepUp === 'function') {
        const maxAge = challengeParam(challenge, 'max_age');
        try {
          onStepUp({ response: res, acrValues: challengeParam(challenge, 'acr_values'), maxAge: maxAge === null ? null : Number(maxAge) });
        } catch (e) { setTimeout(() => { throw e; }); }
      }
      return res;
    }
    if (!cookieMode && !sentWith && !getRefresh()) return res; // anonymous request, nothing to refresh
    if (cookieMode && logoutNotified) return res;                // session ended; wait for login()
    if (!(await recover(sentWith))) return res;
    return baseFetch(prepare(template));
  }

  async function login(username, password, extra = {}) {
    if (password === undefined || (typeof password === 'object' && password !== null)) {
      return loginWith(username, password); // login(provider[, { next, deliver }])
    }
    tabStorage()?.removeItem(PROVIDER_MARK);
    const res = await authPost(loginPath, { username, password, ...extra });
    const data = await readJSON(res);
    return loggedIn(res, data);
  }

  function loggedIn(res, data) {
    if (!res.ok) {
      if (res.status === 401 && data && data.code === 'second_factor_required' && data.mfa_token) {
        throw new SecondFactorRequired(data, res.status);
      }
      throw new AuthError((data && (data.detail || data.message)) || `login failed: HTTP ${res.status}`, res.status, data);
    }
    logoutNotified = false;
    if (!cookieMode) clearState();
    storeTokens(data);
    return data;
  }

  /** The second step of a login that threw SecondFactorRequired: a TOTP `code` or a `recoveryCode`. */
  async function completeSecondFactor(mfaToken, { code, recoveryCode } = {}) {
    const body = recoveryCode !== undefined ? { mfa_token: mfaToken, recovery_code: recoveryCode }
                                            : { mfa_token: mfaToken, code };
    const res = await authPost(loginPath, body);
    return loggedIn(res, await readJSON(res));
  }

  // -- WebAuthn ceremonies ----------------------------------------------------------------------

  async function postJSON(path, body) {
    const headers = {};
    const access = getAccess();
    if (access && !(body && body.mfa_token)) headers.Authorization = `Bearer ${access}`;
    const res = await authPost(path, body, headers);
    const data = await readJSON(res);
    if (!res.ok) throw new AuthError((data && data.detail) || `HTTP ${res.status}`, res.status, data);
    return data;
  }

  /** The second step with an authenticator: `err` is login()'s SecondFactorRequired. Answers as login() does. */
  async function completeWithWebAuthn(err) {
    const options = err.webauthn || (await postJSON(`${mfaPath}/webauthn/login-options`, { mfa_token: err.mfaToken })).publicKey;
    const cred = await webCredentials.get({ publicKey: requestOptions(options) });
    const res = await authPost(loginPath, { mfa_token: err.mfaToken, webauthn: credentialToJSON(cred) });
    return loggedIn(res, await readJSON(res));
  }

  /** Register an authenticator under `name`: after a fresh login, or with the mfaToken of a user who has no factor yet. */
  async function addAuthenticator(name, { mfaToken } = {}) {
    const auth = mfaToken ? { mfa_token: mfaToken } : {};
    const { publicKey } = await postJSON(`${mfaPath}/webauthn`, auth);
    const cred = await webCredentials.create({ publicKey: creationOptions(publicKey) });
    return postJSON(`${mfaPath}/webauthn/confirm`, { ...auth, name, credential: credentialToJSON(cred) });
  }

  /** A passkey login (second_factor.webauthn.passkey_login): no username or password; answers as login() does. */
  async function loginWithPasskey() {
    const { publicKey } = await postJSON(`${mfaPath}/passkey/options`, undefined);
    const cred = await webCredentials.get({ publicKey: requestOptions(publicKey) });
    const res = await authPost(loginPath, { passkey: credentialToJSON(cred) });
    return loggedIn(res, await readJSON(res));
  }

  /**
   * Step-up (docs/second-factor.md#step-up-page-and-step_up_url): re-verify a factor for the signed-in session,
   * `{ code }`, `{ recoveryCode }` or `{ webauthn: true }` (an assertion of one of the user's authenticators). The
   * fresh access token (auth_time now, amr with the factor) replaces the stored one; in cookie mode the gateway
   * sets the cookie. Returns the gateway's answer; throws AuthError when it refuses.
   */
  async function stepUp({ code, recoveryCode, webauthn = false } = {}) {
    let body;
    if (webauthn) {
      const { publicKey } = await postJSON(`${mfaPath}/step-up/options`, {});
      const cred = await webCredentials.get({ publicKey: requestOptions(publicKey) });
      body = { webauthn: credentialToJSON(cred) };
    } else {
      body = recoveryCode !== undefined ? { recovery_code: recoveryCode } : { code };
    }
    const data = await postJSON(`${mfaPath}/step-up`, body);
    if (!cookieMode && data && data.access_token) storage.set(ACCESS_KEY, data.access_token);
    generation += 1;
    return data;
  }

  /**
   * Step-up at the identity provider the session came from: `stepUpURL` is the `step_up_url` of a step-up
   * refusal when it names the gateway's `<oidcPath>/step-up` (docs/second-factor.md#step-up-through-an-identity-provider).
   * Cookie mode: navigates there (the gateway sends the browser on to the provider and back to `next`). Bearer
   * mode: asks the gateway for the provider's authorization URL, back to this page (or `next`), and navigates to
   * it; back here, createClient() exchanges the returned code for the fresh access token of the same session and
   * keeps the refresh token it has (tokens must outlive the navigation: a storage other than memoryStorage);
   * `completeLogin()` says how it went.
   */
  async function stepUpAtProvider(stepUpURL, { next } = {}) {
    const url = new URL(endpoint(stepUpURL));
    if (url.origin !== gatewayOrigin) throw new TypeError('stepUpAtProvider(url): a step_up_url of the gateway');
    if (cookieMode) {
      navigate(url.href);
      return;
    }
    url.searchParams.set('next', next ?? pageHere());
    const res = await clientFetch(url.href, { method: 'POST', headers: { Accept: 'application/json' } }); // refreshed if expired
    const data = await readJSON(res);
    if (!res.ok || !data || typeof data.authorization_url !== 'string') {
      throw new AuthError((data && data.detail) || `step-up failed: HTTP ${res.status}`, res.status, data);
    }
    tabStorage()?.setItem(PENDING_MARK, String(Date.now()));
    navigate(data.authorization_url);
  }

  // This page, as a `next`: a path on the gateway's own origin, else the full URL (an allowed origin).
  function pageHere() {
    if (typeof location === 'undefined') return undefined;
    return location.origin === gatewayOrigin ? location.pathname + location.search : location.href.split('#')[0];
  }

  // -- sign-in through an identity provider ---------------------------------------------------

  /** The URL that starts a sign-in at `provider` (for a plain link); options as for login(provider). */
  function loginURL(provider, { next, deliver } = {}) {
    const target = next ?? pageHere(); // back to this page by default
    const query = new URLSearchParams();
    if (target) query.set('next', target);
    const how = deliver ?? (cookieMode ? undefined : 'code');
    if (how) query.set('deliver', how);
    const qs = query.toString();
    tabStorage()?.setItem(PENDING_MARK, String(Date.now()));
    return endpoint(`${oidcPath}/${encodeURIComponent(provider)}/login`) + (qs ? `?${qs}` : '');
  }

  async function loginWith(provider, options = {}) {
    if (typeof provider !== 'string' || !provider) throw new TypeError('login(provider): a provider name');
    tabStorage()?.setItem(PROVIDER_MARK, provider);
    navigate(loginURL(provider, options ?? {}));
  }

  async function exchange(code) {
    const res = await authPost(exchangePath, { code });
    const data = await readJSON(res);
    if (!res.ok) {
      throw new AuthError((data && (data.detail || data.message)) || `sign-in failed: HTTP ${res.status}`, res.status, data);
    }
    logoutNotified = false;
    // a sign-in's answer starts a session; a step-up's (an access token alone) renews the one there is
    if (!cookieMode && data && (data.refresh ?? data.refresh_token)) clearState();
    storeTokens(data);
    return data;
  }

  // The code of a sign-in that just came back: leaves the URL now, exchanged once.
  const returnedCode = handleRedirect ? takeFragmentCode() : null;
  let exchanging = null;
  if (returnedCode) {
    exchanging = claimPending() ? exchange(returnedCode)
      : Promise.reject(new AuthError('a sign-in code this tab did not ask for (start with login(provider))', 0));
  }
  const completed = exchanging ?? Promise.resolve(null);
  completed.catch(() => {}); // reported by completeLogin(), never as an unhandled rejection
  if (exchanging) exchanging.finally(() => { exchanging = null; }).catch(() => {});

  async function logout({ endSession } = {}) {
    let res = null;
    let endSessionURL = null;
    const viaProvider = endSession ?? Boolean(tabStorage()?.getItem(PROVIDER_MARK));
    const path = viaProvider ? oidcLogoutPath : logoutPath;
    try {
      if (refreshing) { try { await refreshing; } catch { /* ignore */ } }
      if (cookieMode) {
        res = await authPost(path, undefined);
      } else {
        const access = getAccess();
        const refreshTok = getRefresh();
        if (access || refreshTok) {
          res = await authPost(path, refreshTok ? { refresh: refreshTok } : {},
            access ? { Authorization: `Bearer ${access}` } : {});
        }
      }
      if (viaProvider && res && res.ok) endSessionURL = (await readJSON(res))?.end_session_url ?? null;
    } catch {
      // network failure: the local state is cleared anyway
    } finally {
      clearState();
      tabStorage()?.removeItem(PROVIDER_MARK);
      notifyLogout('logout');
    }
    if (endSessionURL && endSession !== false) navigate(endSessionURL);
    return res ? res.ok : false;
  }

  return {
    login,
    completeSecondFactor,
    completeWithWebAuthn,
    addAuthenticator,
    loginWithPasskey,
    stepUp,
    stepUpAtProvider,
    logout,
    loginURL,
    completeLogin: () => completed,
    fetch: clientFetch,
    refresh: () => refresh(stamp()),
    get accessToken() { return getAccess(); },
    get refreshToken() { return getRefresh(); },
    get mode() { return mode; },
  };
}

export default createClient;
