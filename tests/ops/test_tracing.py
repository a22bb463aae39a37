"""Tracing (tracing:, the otel extra): spans of real requests, received by a real OTLP/HTTP endpoint and decoded
from protobuf (opentelemetry-proto), their parents, attributes and the trace context the upstream received."""
from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.config import ConfigError
from gateway.runtime import GATEWAY
from tests.conftest import bearer, login

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


class Collector:
    """An OTLP/HTTP traces endpoint: every export request decoded, every span kept by name."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.content_types: list[str] = []

    async def receive(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((service, span))
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")

    def named(self, prefix: str) -> list[Any]:
        return [span for _, span in self.spans if span.name.startswith(prefix)]


@pytest.fixture
async def collector(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[Collector, str]:
    sink = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", sink.receive)
    server = await aiohttp_server(app)
    return sink, str(server.make_url("/v1/traces"))


def attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        value = a.value
        out[a.key] = value.string_value if value.HasField("string_value") else value.int_value
    return out


async def traced(make_gateway, endpoint: str, **tracing: Any):
    return await make_gateway(tracing={"enabled": True, "endpoint": endpoint, "service_name": "gw-test", **tracing})


async def flushed(client) -> None:
    tracer = client.server.app[GATEWAY].tracer
    assert tracer is not None
    await tracer.flush()


async def test_a_proxied_request_is_a_server_span_with_admission_and_upstream_children(make_gateway, collector, caplog):
    sink, endpoint = collector
    client = await traced(make_gateway, endpoint)
    token = (await login(client))["access"]
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        resp = await client.get("/api/items?secret=hidden", headers={**bearer(token), "X-Request-Id": "req-42",
                                                                     "traceparent": CLIENT_PARENT})
    assert resp.status == 200
    seen = (await resp.json())["headers"]
    await flushed(client)
    assert sink.content_types and set(sink.content_types) == {"application/x-protobuf"}
    [server] = [s for s in sink.named("GET") if attributes(s).get("gateway.request_id") == "req-42"]
    [admission] = [s for s in sink.named("admission") if s.trace_id == server.trace_id]
    [upstream] = [s for s in sink.named("upstream") if s.trace_id == server.trace_id]
    assert server.name == "GET api" and server.kind == 2 and upstream.kind == 3  # SERVER, CLIENT
    assert admission.parent_span_id == server.span_id and upstream.parent_span_id == server.span_id
    assert server.trace_id.hex() != CLIENT_TRACE and server.parent_span_id == b""  # continue_from: none
    attrs = attributes(server)
    assert attrs["http.request.method"] == "GET" and attrs["url.path"] == "/api/items" and attrs["http.route"] == "api"
    assert attrs["http.response.status_code"] == 200 and attrs["enduser.id"] == "alice"
    assert attributes(upstream)["http.response.status_code"] == 200
    assert all("hidden" not in str(a.value) and token not in str(a.value) for _, s in sink.spans for a in s.attributes)
    # the upstream got the gateway's context: this trace, the upstream span as parent; the client's never
    assert seen["traceparent"].startswith(f"00-{server.trace_id.hex()}-{upstream.span_id.hex()}-")
    assert int(seen["traceparent"][-2:], 16) & 1  # sampled
    line = json.loads([r.getMessage() for r in caplog.records if r.name == "gateway.access"][-1])
    assert line["request_id"] == "req-42" and line["trace_id"] == server.trace_id.hex()


async def test_a_clients_trace_is_continued_only_where_configured(make_gateway, collector):
    sink, endpoint = collector
    client = await traced(make_gateway, endpoint, continue_from="any")
    resp = await client.get("/public/x", headers={"traceparent": CLIENT_PARENT, "tracestate": "vendor=1"})
    seen = (await resp.json())["headers"]
    await flushed(client)
    [server] = [s for s in sink.named("GET") if s.trace_id.hex() == CLIENT_TRACE]
    assert server.parent_span_id.hex() == CLIENT_SPAN
    assert seen["traceparent"].startswith(f"00-{CLIENT_TRACE}-") and seen["tracestate"] == "vendor=1"
    # trusted_proxies: the test client (127.0.0.1) is no listed proxy, so its context is not believed
    other = await traced(make_gateway, endpoint, continue_from="trusted_proxies")
    resp = await other.get("/public/x", headers={"traceparent": CLIENT_PARENT, "tracestate": "vendor=1"})
    seen = (await resp.json())["headers"]
    assert CLIENT_TRACE not in seen["traceparent"] and "tracestate" not in seen
    proxied = await make_gateway(trusted_proxies=["127.0.0.1/32"],
                                 tracing={"enabled": True, "endpoint": endpoint, "continue_from": "trusted_proxies"})
    seen = (await (await proxied.get("/public/x", headers={"traceparent": CLIENT_PARENT})).json())["headers"]
    assert seen["traceparent"].startswith(f"00-{CLIENT_TRACE}-")  # a listed proxy's context is continued


async def test_refusals_and_upstream_failures_are_on_the_span(make_gateway, collector):
    sink, endpoint = collector
    client = await traced(make_gateway, endpoint)
    assert (await client.get("/api/x", headers={"X-Request-Id": "refused-1"})).status == 401
    await flushed(client)
    [server] = [s for s in sink.named("GET") if attributes(s).get("gateway.request_id") == "refused-1"]
    assert attributes(server)["error.type"] == "authentication_required" and not sink.named("upstream")


async def test_a_dead_collector_never_slows_a_request(make_gateway):
    client = await make_gateway(tracing={"enabled": True, "endpoint": "http://127.0.0.1:9/v1/traces", "batch_delay": "0.1s"})
    for _ in range(20):
        assert (await client.get("/public/x")).status == 200


async def test_off_nothing_is_traced_and_the_clients_headers_pass(make_gateway):
    client = await make_gateway()
    assert client.server.app[GATEWAY].tracer is None
    seen = (await (await client.get("/public/x", headers={"traceparent": CLIENT_PARENT})).json())["headers"]
    assert seen["traceparent"] == CLIENT_PARENT


def test_config_errors(make_config):
    with pytest.raises(ConfigError, match="endpoint"):
        make_config(tracing={"enabled": True, "endpoint": "collector:4318"})
    with pytest.raises(ConfigError, match="sample_ratio"):
        make_config(tracing={"sample_ratio": 2})
    with pytest.raises(ConfigError, match="continue_from"):
        make_config(tracing={"continue_from": "everyone"})
