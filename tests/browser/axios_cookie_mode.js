// The behaviour of /auth/client.js in cookie mode with axios instead (the gateway with
// `cookies: {enabled: true}`). Tested in Chromium against the real gateway by
// test_cookie_mode_and_cors.py; meant to be copied into the docs verbatim.
//
//   const api = axios.create({ baseURL: 'https://gw.example.com' });
//   installGatewayCookieSession(api, { onLogout: () => router.push('/login') });
//   await api.post('/auth/token', { username, password });   // the tokens arrive as HttpOnly cookies
//   const { data } = await api.get('/api/orders');           // cookies go along; no token in JS
export function installGatewayCookieSession(api, {
  refreshPath = '/auth/token/refresh',
  onLogout = () => {},
} = {}) {
  api.defaults.withCredentials = true;           // send the gateway's cookies, also cross-origin
  api.defaults.withXSRFToken = true;             // axios copies the readable CSRF cookie ...
  api.defaults.xsrfCookieName = 'gw_csrf';       // ... named like this ...
  api.defaults.xsrfHeaderName = 'X-CSRF-Token';  // ... into this header (double submit)
  let generation = 0;                            // bumped by every refresh
  let refreshing = null;                         // the single in-flight refresh, shared by every 401

  api.interceptors.request.use((config) => {
    config._generation ??= generation;           // which session state the request was sent with
    return config;
  });

  api.interceptors.response.use(undefined, async (error) => {
    const config = error.config;
    if (!error.response || error.response.status !== 401 || !config || config._retry
        || config.url === refreshPath) throw error;
    config._retry = true;                        // retry each request once
    if (config._generation === generation) {     // nobody refreshed since it was sent
      refreshing ??= api.post(refreshPath)       // empty body: the refresh token is a cookie
        .then(() => { generation += 1; return true; },
              () => { onLogout(); return false; })                  // once, however many waited
        .finally(() => { refreshing = null; });
      if (!(await refreshing)) throw error;
    }
    return api(config);
  });
}
