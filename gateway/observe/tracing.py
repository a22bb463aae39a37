"""OpenTelemetry tracing (``tracing:``, the ``otel`` extra): a server span per request, child spans for admission
and the upstream call, W3C trace context to the upstream, OTLP/HTTP export from the SDK's batch processor.

Off (the default), nothing here is imported and a request pays one ``is None`` test
per stage. On:

- the server span (``SERVER``, named ``METHOD route``) covers the whole request; it
  continues the client's ``traceparent``/``tracestate`` only as ``continue_from``
  says (a trusted proxy's, anyone's, or nobody's); otherwise the trace starts here;
- ``admission`` covers credentials, policy and header rewrite; ``upstream``
  (``CLIENT``) the call to the upstream, whose request carries the gateway's own
  ``traceparent`` (that span as parent) and the continued ``tracestate``; a
  client's trace headers never reach the upstream unchanged;
- the access line carries ``trace_id`` beside ``request_id``, and the server span
  the request id (``gateway.request_id``), so either finds the other;
- attributes never hold a query string, a header value or a token: method, path
  (truncated), route, status, client address, subject, error code.

Spans go to the collector from the batch processor's own thread: a slow or dead
collector fills its bounded queue (``queue_size``), then spans are dropped, and
no request waits.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

from aiohttp import web
from multidict import CIMultiDict

from gateway.config.tracing import Tracing as TracingSettings

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["TRACE_HEADERS", "Tracer"]

TRACE_HEADERS = ("traceparent", "tracestate")
MAX_PATH = 256
CLOSE_BOUND = 1.0  # seconds the shutdown waits for the last spans to be sent


class Tracer:
    """The process's tracer provider and what a request needs from it."""

    def __init__(self, settings: TracingSettings) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.settings = settings
        self.provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}),
                                       sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers), timeout=settings.timeout)
        self.provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=settings.queue_size,
                                                            schedule_delay_millis=settings.batch_delay * 1000))
        self.tracer = self.provider.get_tracer("gateway")
        self.propagator = TraceContextTextMapPropagator()
        self._server, self._client, self._internal = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
        self._error = StatusCode.ERROR

    @contextlib.contextmanager
    def server(self, request: web.Request, continued: bool, request_id: str) -> Iterator["Span"]:
        """The request's span; ``continued``: the client's trace context may be its parent."""
        parent = self.propagator.extract(_carrier(request.headers)) if continued else None
        attributes = {"http.request.method": request.method, "url.path": request.path[:MAX_PATH],
                      "gateway.request_id": request_id}
        with self.tracer.start_as_current_span(request.method, context=parent, kind=self._server,
                                               attributes=attributes, record_exception=False,
                                               set_status_on_exception=False) as span:
            yield span

    @contextlib.contextmanager
    def stage(self, name: str, upstream: bool = False) -> Iterator["Span"]:
        with self.tracer.start_as_current_span(name, kind=self._client if upstream else self._internal,
                                               record_exception=False, set_status_on_exception=False) as span:
            yield span

    def finish(self, span: "Span", route: str | None, status: int, client: str, subject: str | None,
               code: str | None) -> None:
        """What the request came to, on its server span."""
        if route is not None:
            span.update_name(f"{span.name} {route}")  # type: ignore[attr-defined]
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("client.address", client)
        if subject is not None:
            span.set_attribute("enduser.id", subject)
        if code is not None:
            span.set_attribute("error.type", code)
        if status >= 500:
            span.set_status(self._error)

    def inject(self, headers: CIMultiDict[str]) -> None:
        """The upstream request's trace context: the current span as parent, never the client's own headers."""
        for name in TRACE_HEADERS:
            headers.popall(name, None)
        self.propagator.inject(headers)

    @staticmethod
    def trace_id(span: "Span") -> str | None:
        context = span.get_span_context()
        return f"{context.trace_id:032x}" if context.is_valid else None

    async def close(self, bound: float = CLOSE_BOUND) -> None:
        """Send what is queued and stop the exporter, waiting at most ``bound`` seconds (a dead collector must not
        hold the process's exit: the export goes on in a daemon thread that the exit does not wait for)."""
        done = threading.Thread(target=self.provider.shutdown, name="tracing-shutdown", daemon=True)
        done.start()
        deadline = time.monotonic() + bound
        while done.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def flush(self) -> None:
        """Send every finished span now (tests, and an operator's reload)."""
        await asyncio.to_thread(self.provider.force_flush)


def _carrier(headers: Any) -> dict[str, str]:
    """The trace context headers of a request, each only if given once (two traceparents: none)."""
    carrier = {}
    for name in TRACE_HEADERS:
        values = headers.getall(name, [])
        if len(values) == 1:
            carrier[name] = values[0]
    return carrier
