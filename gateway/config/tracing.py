"""``tracing``: OpenTelemetry spans of every request, exported over OTLP/HTTP (the ``otel`` extra)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.types import Duration, Model, base_url

__all__ = ["Tracing"]


class Tracing(Model):
    """A server span per request with child spans for admission and the upstream call; W3C trace context to upstreams."""

    enabled: bool = False
    """Trace every request; needs the `otel` extra (`pip install 'jwt-gateway[otel]'`; the locks and the image have it). Off: no cost, and a client's `traceparent` passes as any other header."""
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """The OTLP/HTTP traces URL of the collector (protobuf)."""
    service_name: str = Field("gateway", min_length=1)
    """The `service.name` of the spans."""
    sample_ratio: float = Field(1.0, ge=0, le=1)
    """Share of new traces recorded; a continued trace follows its parent's decision."""
    continue_from: Literal["none", "trusted_proxies", "any"] = "none"
    """Whose `traceparent`/`tracestate` a request's span continues: `none` starts a trace at the gateway (the client's headers are replaced towards the upstream), `trusted_proxies` only a peer in `trusted_proxies` (or every peer with `trust_forwarded_headers`), `any` every client."""
    headers: dict[str, str] = {}
    """Headers of the export requests (e.g. a collector's API key)."""
    timeout: Duration = Field(10.0, gt=0, le=60)
    """Per export request."""
    batch_delay: Duration = Field(5.0, gt=0, le=60)
    """Longest wait before finished spans are sent (the SDK's batch processor; a full batch goes at once)."""
    queue_size: int = Field(2048, ge=64, le=100_000)
    """Finished spans held for export; past it new spans are dropped (counted by the SDK), never a request slowed."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return base_url(value)

    @model_validator(mode="after")
    def _installed(self) -> "Tracing":
        if self.enabled:
            try:
                import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
                import opentelemetry.sdk.trace  # noqa: F401
            except ImportError:
                raise ValueError("enabled: needs the otel extra: pip install 'jwt-gateway[otel]'") from None
        return self
