"""The seed frontends' pages and what each must achieve, shared by the browser tests that run them.

Each page logs in, makes a protected call, waits for its access token (2 s) to expire, and makes
more calls that the seed's own interceptors must rescue: 401, silent refresh, retry. ``check_*``
reads the page's result, the upstream's hits (``Site.api_hits``) and the gateway's access log
between the page's ``mark()`` calls.
"""
from __future__ import annotations

import json
from typing import Any

from stack import RunningGateway, Site

SEED_000 = r"""<script src="/app/vendor/axios.min.js"></script>
<script type=module>
import { login, API_FetchAllRoles } from '/app/seeds/000_flask/client.js';
run(async () => {
  await login('alice@example.com', '__PASSWORD__')();   // the thunk, as redux-thunk would run it
  const access0 = localStorage.getItem('access_token');
  await API_FetchAllRoles();                              // protected call
  const rounds = [];
  for (let round = 0; round < 2; round++) {              // twice: the seed never stores a new refresh token
    await sleep(2800);                                    // the access token (2 s) expires
    await mark('expired-' + round);
    await API_FetchAllRoles();                            // 401 "Token has expired" -> refresh -> retry
    await mark('done-' + round);
    rounds.push(localStorage.getItem('access_token'));
  }
  return { access0, rounds, refresh: localStorage.getItem('refresh_token') };
});
</script>"""



def check_000(r: dict[str, Any], site: Site, gateway: RunningGateway) -> None:
    assert r["access0"] and len(set([r["access0"], *r["rounds"]])) == 3
    for round in (0, 1):
        entries = gateway.between(f"expired-{round}", f"done-{round}")
        assert gateway.hits("/api/admin/roles", entries) == [401, 200]
        assert gateway.hits("/auth/jwt/refresh", entries) == [200]
    assert {h["user"] for h in site.api_hits} == {"alice"} and len(site.api_hits) == 3


SEED_003 = r"""<script type="importmap">{"imports": {
  "axios": "/app/vendor/axios.mjs",
  "vue": "/app/seeds/stubs/vue.js",
  "vuex": "/app/seeds/stubs/vuex.js",
  "vuex-persistedstate": "/app/seeds/stubs/vuex-persistedstate.js",
  "/app/seeds/003_djoser_vuex/store": "/app/seeds/003_djoser_vuex/store/index.js",
  "/app/seeds/003_djoser_vuex/router": "/app/seeds/003_djoser_vuex/router.js"
}}</script>
<script type=module>
import axios from "axios";
import axiosSetup from "/app/seeds/003_djoser_vuex/helpers/axios.js";
import store from "/app/seeds/003_djoser_vuex/store";
import router from "/app/seeds/003_djoser_vuex/router";
run(async () => {
  axiosSetup();                                                   // as the seed's main.js does
  await store.dispatch("logIn", { username: "alice", password: "__PASSWORD__" });
  for (let i = 0; i < 100 && !store.getters.isAuthenticated; i++) await sleep(20);   // fetchUser runs detached
  const first = await axios.get("v1/orders/");
  const access0 = store.getters.accessToken;
  await sleep(2800);
  await mark('expired');
  const res = await Promise.all([axios.get("v1/orders/1"), axios.post("v1/orders/", { n: 2 }), axios.get("v1/orders/3")]);
  await mark('done');
  return {
    user: store.getters.loggedInUser, firstStatus: first.status, statuses: res.map((r) => r.status),
    paths: res.map((r) => r.data.path), postBody: res[1].data.body,
    changed: access0 !== store.getters.accessToken, pushes: router.pushes,
    persisted: JSON.parse(localStorage.getItem("vuex")).isAuthenticated,
  };
});
</script>"""



def check_003(r: dict[str, Any], site: Site, gateway: RunningGateway, me: dict[str, Any]) -> None:
    """``me``: what GET users/me/ answers for alice."""
    assert r["user"] == me
    assert r["firstStatus"] == 200 and r["statuses"] == [200, 200, 200] and r["changed"]
    assert r["paths"] == ["/api/v1/orders/1", "/api/v1/orders/", "/api/v1/orders/3"]
    assert json.loads(r["postBody"]) == {"n": 2}
    assert r["pushes"] == [{"name": "home"}] and r["persisted"] is True  # never sent to /login
    entries = gateway.between("expired", "done")
    # no single flight in this seed: each failed request refreshes on its own, and without
    # rotation (the djoser profile's default) none of those refreshes looks like a reuse
    assert gateway.hits("/api/v1/auth/jwt/refresh", entries) == [200, 200, 200]
    assert sorted(e["status"] for e in entries if e["path"].startswith("/api/v1/orders")) == [200] * 3 + [401] * 3


SEED_004 = r"""<script type="importmap">{"imports": {"axios": "/app/vendor/axios.mjs"}}</script>
<script type=module>
import { login, apiClient } from '/app/seeds/004_custom/client.js';
run(async () => {
  await login('alice', '__PASSWORD__');
  const refresh0 = localStorage.getItem('refreshToken');
  const first = await apiClient.get('/api/test-get');
  const rounds = [];
  for (let round = 0; round < 2; round++) {
    const access = localStorage.getItem('jwtToken');
    await sleep(2800);
    await mark('expired-' + round);
    const res = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      i % 2 ? apiClient.get('/api/test-get?i=' + i) : apiClient.post('/api/test-post', { i })));
    await mark('done-' + round);
    rounds.push({ statuses: res.map((r) => r.status), changed: access !== localStorage.getItem('jwtToken') });
  }
  return { firstStatus: first.status, rounds, sameRefresh: refresh0 === localStorage.getItem('refreshToken') };
});
</script>"""



def check_004(r: dict[str, Any], site: Site, gateway: RunningGateway) -> None:
    assert r["firstStatus"] == 200 and r["sameRefresh"]
    for round in (0, 1):
        assert r["rounds"][round] == {"statuses": [200] * 10, "changed": True}
        entries = gateway.between(f"expired-{round}", f"done-{round}")
        refreshes = gateway.hits("/api/refresh-token", entries)
        # the seed's queue makes one refresh for the burst; a 401 that arrives after that refresh
        # finished starts another, which must succeed as well
        assert refreshes and set(refreshes) == {200}, refreshes
        assert sorted(e["status"] for e in entries if e["path"].startswith("/api/test-")) == [200] * 10 + [401] * 10
    assert {h["user"] for h in site.api_hits} == {"alice"}
