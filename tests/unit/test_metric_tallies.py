"""Per-request metrics are plain tallies folded into prometheus-client's children when the registry is read
(observe/metrics.py): a scrape shows exactly what observing each request would have shown."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from gateway.observe.metrics import BUCKETS, Metrics

durations = st.lists(st.floats(min_value=0, max_value=120, allow_nan=False)
                     | st.sampled_from(BUCKETS), max_size=60)  # bounds themselves: on the edge of two buckets


def _buckets(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> list[float | None]:
    return [registry.get_sample_value(f"{name}_bucket", {**labels, "le": le})
            for le in [*(str(float(b)) for b in BUCKETS), "+Inf"]]


@settings(max_examples=100, deadline=None)
@given(seconds=durations, upstream=durations)
def test_a_scrape_shows_what_observing_each_request_shows(seconds: list[float], upstream: list[float]) -> None:
    metrics = Metrics()
    reference = CollectorRegistry()
    observed = Histogram("ref_seconds", "", ["route"], buckets=BUCKETS, registry=reference)
    bound = metrics.route("api")
    for value in seconds:
        bound.request("GET", 200, value)
        observed.labels("api").observe(value)
    for value in upstream:
        bound.upstream(value, None)
    registry = metrics.registry
    buckets = _buckets(registry, "gateway_request_duration_seconds", {"route": "api"})
    assert None not in buckets and buckets[-1] == len(seconds)
    assert buckets == (_buckets(reference, "ref_seconds", {"route": "api"}) if seconds else [0.0] * (len(BUCKETS) + 1))
    total = registry.get_sample_value("gateway_request_duration_seconds_sum", {"route": "api"})
    assert total == pytest.approx(sum(seconds))
    count = registry.get_sample_value("gateway_requests_total", {"route": "api", "method": "GET", "status_class": "2xx"})
    assert count == (len(seconds) or None)  # no request: no series
    if upstream:
        assert registry.get_sample_value("gateway_upstream_duration_seconds_count", {"route": "api"}) == len(upstream)
        assert registry.get_sample_value("gateway_upstream_duration_seconds_sum", {"route": "api"}) == \
            pytest.approx(sum(upstream))


def test_tallies_fold_once_and_keep_counting() -> None:
    metrics = Metrics()
    bound = metrics.route("api")
    for method, status in [("GET", 200), ("GET", 204), ("POST", 503), ("BREW", 418), ("PROPFIND", 404)]:
        bound.request(method, status, 0.002)
    assert len(metrics.unfolded) == 1  # one route, listed once

    def requests(method: str, status_class: str) -> float | None:
        return metrics.registry.get_sample_value(
            "gateway_requests_total", {"route": "api", "method": method, "status_class": status_class})

    assert (requests("GET", "2xx"), requests("POST", "5xx"), requests("other", "4xx")) == (2, 1, 2)
    assert requests("GET", "2xx") == 2  # read again: folded once, not twice
    assert metrics.unfolded == []
    bound.request("GET", 200, 0.002)
    text, _ = metrics.render(None)
    assert b'gateway_requests_total{method="GET",route="api",status_class="2xx"} 3.0' in text


def test_with_workers_each_request_is_folded_at_once() -> None:
    """The other workers read this one's samples from their files whenever they are scraped."""
    metrics = Metrics()
    metrics.at_once = True
    bound = metrics.route("api")
    bound.request("GET", 200, 0.002)
    bound.upstream(0.001, None)
    assert metrics.unfolded == []
    assert metrics.requests.labels("api", "GET", "2xx")._value.get() == 1  # in the child, unread
    assert metrics.request_seconds.labels("api")._sum.get() == 0.002
