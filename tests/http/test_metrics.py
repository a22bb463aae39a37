"""GET /metrics: what a session, a proxied call and a failure each move, per app, on the admin port too."""
from __future__ import annotations

import asyncio
import inspect

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.observe.metrics import Metrics
from gateway.runtime import GATEWAY
from gateway.server.admin import create_admin_app
from gateway.stores import MemoryStore, Store, StoreUnavailable
from gateway.stores.instrumented import InstrumentedStore
from gateway.stores.redis import RedisStore
from tests.conftest import bearer, login


async def scrape(client, path: str = "/metrics") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get(path)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await resp.text()) for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_session_moves_the_token_counters(make_gateway, redis_url):
    gateway = await make_gateway(store=RedisStore(redis_url), tokens={"refresh_grace": "0s"})
    first = await login(gateway)
    second = await (await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})).json()
    await asyncio.sleep(0.01)
    assert (await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})).status == 401  # reuse
    other = await login(gateway, "bob")
    await gateway.post("/auth/logout", json={"refresh": other["refresh"]}, headers=bearer(other["access"]))
    await gateway.get("/api/x", headers=bearer(other["access"]))  # revoked
    await gateway.get("/api/x")  # no token
    await gateway.get("/admin/x", headers=bearer(second["access"]))  # alice is admin but revoked by the reuse
    await gateway.post("/auth/token", json={"username": "bob", "password": "wrong"})

    m = await scrape(gateway)
    assert value(m, "gateway_tokens_issued_total", grant="login") == 2
    assert value(m, "gateway_tokens_issued_total", grant="refresh") == 1
    assert value(m, "gateway_token_refreshes_total", outcome="rotated") == 1
    assert value(m, "gateway_token_refreshes_total", outcome="reused") == 1
    assert value(m, "gateway_refresh_reuse_detected_total") == 1
    assert value(m, "gateway_revocations_total", reason="reuse") == 1
    assert value(m, "gateway_revocations_total", reason="logout") == 1
    assert value(m, "gateway_auth_failures_total", code="token_reused") == 1
    assert value(m, "gateway_auth_failures_total", code="token_revoked") == 2
    assert value(m, "gateway_auth_failures_total", code="authentication_required") == 1
    assert value(m, "gateway_auth_failures_total", code="invalid_credentials") == 1
    assert value(m, "gateway_requests_total", route="@/auth/token", method="POST", status_class="2xx") == 2
    assert value(m, "gateway_requests_total", route="@/auth/token", method="POST", status_class="4xx") == 1
    assert value(m, "gateway_requests_total", route="api", method="GET", status_class="4xx") == 2
    assert value(m, "gateway_store_operation_duration_seconds_count", operation="rotate") == 2
    assert value(m, "gateway_store_operation_duration_seconds_count", operation="start_family") == 2
    assert value(m, "gateway_store_operation_duration_seconds_count", operation="is_revoked") == 2
    assert value(m, "gateway_store_errors_total", operation="is_revoked") == 0


async def test_proxied_requests_and_store_errors(make_gateway, redis_server, redis_url):
    gateway = await make_gateway(store=RedisStore(redis_url, timeout=0.5))
    pair = await login(gateway)
    for _ in range(3):
        assert (await gateway.get("/api/x?q=1", headers=bearer(pair["access"]))).status == 200
    await gateway.request("PROPFIND", "/public/x")
    await gateway.get("/nowhere")
    redis_server.stop()
    try:
        assert (await gateway.get("/api/x", headers=bearer(pair["access"]))).status == 503
    finally:
        redis_server.start()
    m = await scrape(gateway)
    assert value(m, "gateway_requests_total", route="api", method="GET", status_class="2xx") == 3
    assert value(m, "gateway_requests_total", route="api", method="GET", status_class="5xx") == 1
    assert value(m, "gateway_requests_total", route="public", method="other", status_class="2xx") == 1
    assert value(m, "gateway_requests_total", route="unmatched", method="GET", status_class="4xx") == 1
    assert value(m, "gateway_request_duration_seconds_count", route="api") == 4
    assert value(m, "gateway_upstream_duration_seconds_count", route="api") == 3
    assert value(m, "gateway_upstream_duration_seconds_count", route="public") == 1
    assert value(m, "gateway_store_errors_total", operation="is_revoked") == 1
    assert value(m, "gateway_requests_in_flight") == 1  # the scrape itself


async def test_each_app_has_its_own_registry(make_gateway):
    one, two = await make_gateway(), await make_gateway()
    for _ in range(3):
        await one.get("/public/x")
    assert value(await scrape(one), "gateway_requests_total", route="public", method="GET", status_class="2xx") == 3
    assert value(await scrape(two), "gateway_requests_total", route="public", method="GET", status_class="2xx") == 0


async def test_openmetrics_when_asked(gateway):
    resp = await gateway.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).endswith("# EOF\n")


async def test_metrics_path_is_configurable_and_can_be_off(make_gateway):
    moved = await make_gateway(metrics={"path": "/internal/metrics"})
    assert (await moved.get("/internal/metrics")).status == 200
    off = await make_gateway(metrics={"enabled": False})
    assert (await off.get("/metrics")).status == 404


async def test_admin_listener_serves_metrics_and_health_off_the_main_port(aiohttp_client, make_config):
    app = create_app(make_config(admin={"host": "127.0.0.1", "port": 0}))
    main = await aiohttp_client(app)
    admin = await aiohttp_client(create_admin_app(app[GATEWAY]))
    await main.get("/public/x")
    assert (await main.get("/metrics")).status == 404  # not on the public port
    assert value(await scrape(admin), "gateway_requests_total", route="public", method="GET", status_class="2xx") == 1
    assert (await admin.get("/healthz")).status == 200
    assert (await admin.get("/readyz")).status == 200
    assert (await admin.get("/auth/token")).status == 404
    assert (await admin.post("/metrics")).status == 405
    app[GATEWAY].lifecycle.draining = True
    resp = await admin.get("/readyz")
    assert resp.status == 503 and (await resp.json())["status"] == "draining"
    assert (await main.get("/readyz")).status == 503


class FailingStore(MemoryStore):
    async def is_revoked(self, family: str, jti: str) -> bool:
        raise StoreUnavailable()


async def test_instrumented_store_times_every_operation_of_the_interface():
    """Every coroutine of the Store interface has its own timed method (nothing is forwarded by attribute lookup,
    so an operation added to the interface without one fails here)."""
    interface = {name for role in Store.__mro__ for name, value in vars(role).items() if inspect.iscoroutinefunction(value)}
    assert {"rotate", "is_revoked", "deny", "incr_counter", "put_once"} <= interface
    assert interface - set(vars(InstrumentedStore)) == set()
    metrics = Metrics()
    store = InstrumentedStore(FailingStore(), metrics)
    await store.put_once("k", "v", 10)
    with pytest.raises(StoreUnavailable):
        await store.is_revoked("f", "j")
    samples = {(s.name, tuple(s.labels.items())): s.value for f in metrics.registry.collect() for s in f.samples}
    assert samples[("gateway_store_operation_duration_seconds_count", (("operation", "put_once"),))] == 1
    assert samples[("gateway_store_errors_total", (("operation", "is_revoked"),))] == 1
    assert ("gateway_store_errors_total", (("operation", "put_once"),)) not in samples
