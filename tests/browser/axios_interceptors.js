// The behaviour of /auth/client.js with axios interceptors instead (for apps that already use
// axios). Tested in Chromium by test_client_js.py; meant to be copied into the docs verbatim.
//
//   const api = axios.create({ baseURL: 'https://gw.example.com' });
//   installGatewayRefresh(axios, api, { onLogout: () => router.push('/login') });
//   const { data } = await api.post('/auth/token', { username, password });
//   tokens.set(data);                  // or let installGatewayRefresh's storage do it, see below
export function installGatewayRefresh(axios, api, {
  refreshPath = '/auth/token/refresh',
  storage = window.localStorage,      // or any { getItem, setItem, removeItem }
  onLogout = () => {},
} = {}) {
  let refreshing = null;              // the single in-flight refresh, shared by every 401
  const getAccess = () => storage.getItem('access_token');

  api.interceptors.request.use((config) => {
    const token = getAccess();
    if (token) config.headers.Authorization = `Bearer ${token}`;
    return config;
  });

  api.interceptors.response.use((response) => {
    // keep tokens from the login answer
    if (response.config.url.endsWith('/auth/token') && response.data && response.data.access) {
      storage.setItem('access_token', response.data.access);
      storage.setItem('refresh_token', response.data.refresh);
    }
    return response;
  }, async (error) => {
    const config = error.config;
    if (!error.response || error.response.status !== 401 || !config || config._retry) throw error;
    config._retry = true;                                   // retry each request once
    const sentWith = String(config.headers.Authorization || '').replace(/^Bearer /, '');
    if (!sentWith && !storage.getItem('refresh_token')) throw error;   // not logged in at all
    if (sentWith === getAccess()) {                         // nobody refreshed since it was sent
      refreshing ??= axios
        .post(refreshPath, { refresh: storage.getItem('refresh_token') }, { baseURL: api.defaults.baseURL })
        .then(({ data }) => {
          storage.setItem('access_token', data.access);
          if (data.refresh) storage.setItem('refresh_token', data.refresh);   // rotation
          return true;
        }, () => {
          storage.removeItem('access_token');
          storage.removeItem('refresh_token');
          onLogout();                                       // once, however many requests waited
          return false;
        })
        .finally(() => { refreshing = null; });
      if (!(await refreshing)) throw error;
    }
    return api(config);                                     // the request interceptor adds the new token
  });
}
