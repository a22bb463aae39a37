"""Prometheus metrics: one registry per app, served as ``GET /metrics`` (or on the admin port).

Each app owns its ``CollectorRegistry`` (never the global one), so two gateways
in one process, as in the tests, count separately. With ``--workers N`` the
parent sets ``PROMETHEUS_MULTIPROC_DIR`` for its workers: every worker writes its
samples there and whichever worker answers a scrape reports the sum over all
workers (prometheus-client's multiprocess mode).

Label values are bounded by the configuration: route names and endpoint paths
come from the config file, methods outside the standard set count as ``other``,
statuses as classes (``2xx``), and codes are the gateway's own error codes.

The per-request metrics are plain counters: ``Metrics.route(name)`` keeps a
route's (or endpoint's) tallies (requests by method and status class, each
duration's bucket and their sum), and a request adds to them, without a
``labels(...)`` call or a lock. They are folded into prometheus-client's
children whenever the registry is read (a scrape, ``get_sample_value``: the
registry's first collector folds them), so what a scrape shows is exact. With
``--workers N`` another worker reads this one's samples from their files at
any time, so there every request folds its tallies at once.
"""
from __future__ import annotations

import os
from bisect import bisect_left
from typing import Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.errors import ErrorCode

__all__ = ["METRICS", "Metrics", "RouteMetrics", "metrics_handler", "multiprocess_dir"]

# Seconds: from a cache-hit 1 ms to the default 30 s route timeout.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the output and no dashboard reads them


def multiprocess_dir() -> str | None:
    """The directory shared by the workers' samples, if this process runs in multiprocess mode."""
    return os.environ.get(MULTIPROC_ENV) or None


class _Tally:
    """Durations of one histogram child not folded into it yet: how many fell in each bucket, and their sum."""

    __slots__ = ("child", "counts", "total")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: +Inf
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds, as observe()
        self.total += seconds

    def fold(self) -> None:
        """Into the child, as ``observe`` would have added each: the sum, and each bucket's count (the child's
        ``_sum`` and ``_buckets``: prometheus-client has no public way to add many observations at once)."""
        child, counts = self.child, self.counts
        if self.total:
            child._sum.inc(self.total)
            self.total = 0.0
        for i, count in enumerate(counts):
            if count:
                child._buckets[i].inc(count)
                counts[i] = 0


class RouteMetrics:
    """One route's (or own endpoint's) per-request tallies, and the children they are folded into."""

    __slots__ = ("_metrics", "_name", "_counts", "_requests", "_duration", "_upstream_duration", "_upstream_errors",
                 "_folded")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._metrics = metrics
        self._name = name
        self._counts: dict[tuple[str, int], int] = {}  # (method or "other", status // 100): requests not folded yet
        self._requests: dict[tuple[str, int], Counter] = {}  # their children
        self._duration = _Tally(metrics.request_seconds.labels(name))
        self._upstream_duration: _Tally | None = None  # only routes that reach an upstream get the series
        self._upstream_errors: dict[str, Counter] = {}
        self._folded = True  # nothing in the tallies: not on the metrics' list of routes to fold

    def request(self, method: str, status: int, seconds: float) -> None:
        """A request answered: counted by method and status class, its duration observed."""
        key = (method if method in METHODS else "other", status // 100)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._duration.add(seconds)
        self._added()

    def upstream(self, seconds: float | None, error: str | None) -> None:
        """Time until the upstream's headers, and the kind of failure if there was one."""
        if seconds is not None:
            if self._upstream_duration is None:
                self._upstream_duration = _Tally(self._metrics.upstream_seconds.labels(self._name))
            self._upstream_duration.add(seconds)
            self._added()
        if error is not None:  # a failure: not worth a tally
            child = self._upstream_errors.get(error)
            if child is None:
                child = self._upstream_errors[error] = self._metrics.upstream_errors.labels(self._name, error)
            child.inc()

    def _added(self) -> None:
        if self._metrics.at_once:
            self.fold()
        elif self._folded:
            self._folded = False
            self._metrics.unfolded.append(self)

    def fold(self) -> None:
        """The tallies into their children."""
        self._folded = True
        for key, count in self._counts.items():
            child = self._requests.get(key)
            if child is None:
                method, status_class = key
                child = self._requests[key] = self._metrics.requests.labels(self._name, method, f"{status_class}xx")
            child.inc(count)
        self._counts.clear()
        self._duration.fold()
        if self._upstream_duration is not None:
            self._upstream_duration.fold()


class _Fold(Collector):
    """The registry's first collector: it folds every route's tallies before the others are read, and reads none."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        self.metrics.fold()
        return ()


class Metrics:
    """Every metric the gateway exports; methods name the events that move them."""

    def __init__(self) -> None:
        self._routes: dict[str, RouteMetrics] = {}
        self._store_timers: dict[str, Histogram] = {}  # pre-bound children of store_seconds, by operation
        self.unfolded: list[RouteMetrics] = []  # routes whose tallies hold requests not folded yet
        self.at_once = multiprocess_dir() is not None  # the other workers read this one's files at any time
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_Fold(self))  # first: the registry reads its collectors in the order they came
        self.requests = Counter(
            "gateway_requests", "Requests answered, by route, method and status class",
            ["route", "method", "status_class"], registry=r)
        self.request_seconds = Histogram(
            "gateway_request_duration_seconds", "Time from request to the last byte of the answer, by route",
            ["route"], buckets=BUCKETS, registry=r)
        self.in_flight = Gauge(
            "gateway_requests_in_flight", "Requests being handled now", registry=r, multiprocess_mode="livesum")
        # Moved per request only in multiprocess mode (the other workers read the samples' files); else None and
        # the gauge reads the process's own count when scraped (follow_in_flight).
        self.in_flight_shared: Gauge | None = self.in_flight if multiprocess_dir() is not None else None
        self.upstream_seconds = Histogram(
            "gateway_upstream_duration_seconds", "Time until the upstream answered with its headers, by route",
            ["route"], buckets=BUCKETS, registry=r)
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Upstream failures by route and kind (unavailable, timeout, aborted)",
            ["route", "kind"], registry=r)
        self.tokens_issued = Counter(
            "gateway_tokens_issued", "Tokens handed out, by grant (login, refresh, oidc, step_up)", ["grant"], registry=r)
        self.refreshes = Counter(
            "gateway_token_refreshes", "Refresh attempts that reached the store, by outcome", ["outcome"], registry=r)
        self.reuse_detected = Counter(
            "gateway_refresh_reuse_detected", "Spent refresh tokens presented again (the family is revoked)", registry=r)
        self.revocations = Counter(
            "gateway_revocations", "Sessions revoked, by reason (logout, reuse, user_removed, session_limit, admin, password_changed)", ["reason"], registry=r)
        self.auth_failures = Counter(
            "gateway_auth_failures", "Requests refused with 401, 403 or 429, and decisions refused for a header the front proxy would pass on (header_not_allowed), by error code", ["code"], registry=r)
        self.store_seconds = Histogram(
            "gateway_store_operation_duration_seconds", "Store operation latency by operation",
            ["operation"], buckets=STORE_BUCKETS, registry=r)
        self.store_errors = Counter(
            "gateway_store_errors", "Store operations that failed (store unavailable), by operation",
            ["operation"], registry=r)
        self.fail_open = Counter(
            "gateway_store_fail_open", "Requests served without a revocation check (failure_mode fail_open)",
            registry=r)
        self.revocation_lookups = Counter(
            "gateway_revocation_cache_lookups",
            "Revocation checks with store.revocation_cache on, by result: hit (answered locally), "
            "miss (asked Redis, may cache the answer), bypass (asked Redis: subscription not healthy)",
            ["result"], registry=r)
        self._lookup_results = {k: self.revocation_lookups.labels(k) for k in ("hit", "miss", "bypass")}
        self.revocation_events = Counter(
            "gateway_revocation_cache_events", "Revocations received over Redis pub/sub", registry=r)
        self.revocation_subscribed = Gauge(
            "gateway_revocation_cache_subscribed",
            "1 while the revocation cache's pub/sub subscription is confirmed healthy (0 also when the cache is off)",
            registry=r, multiprocess_mode="livemin")
        self.source_calls = Counter(
            "gateway_user_source_calls", "Identity source calls by source, operation (find, check, lookup) and "
            "result (found, unknown, error)", ["source", "operation", "result"], registry=r)
        self.source_seconds = Histogram(
            "gateway_user_source_duration_seconds", "Identity source call latency by source and operation",
            ["source", "operation"], buckets=BUCKETS, registry=r)
        self.oidc_logins = Counter(
            "gateway_oidc_logins", "Sign-ins through an OpenID Provider, by provider and result (success or the refusal's code)",
            ["provider", "result"], registry=r)
        self.audit_dropped = Counter(
            "gateway_audit_events_dropped", "Audit events the webhook sink dropped, by reason (queue_full, "
            "delivery_failed after every retry, shutdown)", ["reason"], registry=r)
        self.reloads = Counter(
            "gateway_config_reloads", "Configuration reloads by result (success, failure)", ["result"], registry=r)
        self.last_reload = Gauge(
            "gateway_config_last_reload_success_timestamp_seconds", "When the configuration in force was loaded",
            registry=r, multiprocess_mode="max")
        self.open_connections = Gauge(
            "gateway_open_connections", "Client connections open (limits.max_connections)", registry=r,
            multiprocess_mode="livesum")
        self.open_websockets = Gauge(
            "gateway_open_websockets", "Websockets open (limits.max_websockets)", registry=r, multiprocess_mode="livesum")
        self.draining = Gauge(
            "gateway_draining", "1 while the process drains before exiting", registry=r, multiprocess_mode="livemax")
        if multiprocess_dir() is None:
            ProcessCollector(registry=r)  # CPU, memory, fds; not aggregatable across workers
        self.last_reload.set_to_current_time()

    def follow_in_flight(self, count: Callable[[], int]) -> None:
        """The in-flight gauge is ``count()`` (the lifecycle's plain counter) when scraped, in a single process."""
        if self.in_flight_shared is None:
            self.in_flight.set_function(count)

    def connections(self, open_connections: int, open_websockets: int) -> None:
        """connections.ConnectionGuard reports here on every change."""
        self.open_connections.set(open_connections)
        self.open_websockets.set(open_websockets)

    # -- requests -------------------------------------------------------------------

    def route(self, name: str) -> RouteMetrics:
        """The pre-bound children of route (or ``@<endpoint>``, ``unmatched``) ``name``.

        Names come from the configuration, so the cache is bounded by the routes and
        endpoints of the configurations this process has run (reloads add, never remove).
        """
        bound = self._routes.get(name)
        if bound is None:
            bound = self._routes[name] = RouteMetrics(self, name)
        return bound

    def fold(self) -> None:
        """Every route's tallies into their children (the registry's first collector calls it)."""
        unfolded, self.unfolded = self.unfolded, []
        for bound in unfolded:
            bound.fold()

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.route(route).request(method, status, seconds)

    def upstream(self, route: str, seconds: float | None, error: str | None) -> None:
        self.route(route).upstream(seconds, error)

    def refused(self, status: int, code: str) -> None:
        if status in (401, 403, 429) or code == ErrorCode.HEADER_NOT_ALLOWED:
            self.auth_failures.labels(code).inc()  # refusals only: not the hot path

    # -- sessions (gateway.auth.AuthEvents) -------------------------------------------------

    def issued(self, grant: str) -> None:
        self.tokens_issued.labels(grant).inc()

    def refreshed(self, outcome: str) -> None:
        self.refreshes.labels(outcome).inc()
        if outcome == "reused":
            self.reuse_detected.inc()
            self.revocations.labels("reuse").inc()

    def revoked(self, reason: str) -> None:
        self.revocations.labels(reason).inc()

    # -- identity sources (gateway.sources.chain.SourceEvents) -------------------------------

    def oidc_login(self, provider: str, result: str) -> None:
        self.oidc_logins.labels(provider, result).inc()

    def source_call(self, source: str, operation: str, result: str, seconds: float) -> None:
        self.source_calls.labels(source, operation, result).inc()
        self.source_seconds.labels(source, operation).observe(seconds)

    # -- store (gateway.stores.instrumented.StoreObserver) ----------------------------------

    def store_call(self, operation: str, seconds: float, failed: bool) -> None:
        timer = self._store_timers.get(operation)  # operations are the store interface's method names: bounded
        if timer is None:
            timer = self._store_timers[operation] = self.store_seconds.labels(operation)
        timer.observe(seconds)
        if failed:
            self.store_errors.labels(operation).inc()

    # -- revocation cache (gateway.stores.revocation_cache.CacheObserver) ---------------------

    def revocation_lookup(self, result: str) -> None:
        self._lookup_results[result].inc()

    def revocation_event(self) -> None:
        self.revocation_events.inc()

    def revocation_subscription(self, healthy: bool) -> None:
        self.revocation_subscribed.set(1 if healthy else 0)

    # -- exposition -------------------------------------------------------------------

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The text exposition (or OpenMetrics if the scraper asks for it), summed over workers."""
        registry = self.registry
        directory = multiprocess_dir()
        if directory is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type


METRICS = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``; usable as an aiohttp handler and as a gateway endpoint handler."""
    body, content_type = request.app[METRICS].render(request.headers.get("Accept"))
    response = web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
    return response
