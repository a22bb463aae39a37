"""``audit``: where the audit events (docs/audit.md) go: stdout or a file, and optionally a signed webhook."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.types import Duration, Model, base_url

__all__ = ["Audit", "AuditWebhook"]

MIN_SECRET_BYTES = 32


class AuditWebhook(Model):
    """Events POSTed in batches, signed with HMAC-SHA256, from a bounded queue; a slow or dead receiver never slows a request."""

    url: str
    """The receiver, an absolute http(s) URL; it gets newline-delimited JSON events and the `X-Gateway-Signature` header."""
    secret: SecretStr
    """Signs every body (HMAC-SHA256), at least 32 bytes (e.g. `${AUDIT_WEBHOOK_SECRET}`); the receiver checks with the same."""
    queue_size: int = Field(1000, ge=1, le=1_000_000)
    """Events waiting for delivery at most; past it an event is dropped and counted (`gateway_audit_events_dropped_total`)."""
    timeout: Duration = 5.0
    """Per delivery attempt, 0.1s..60s; at shutdown, also how long waiting events get to be delivered."""
    max_retries: int = Field(5, ge=0, le=20)
    """Further attempts after a failed delivery (refused connection, timeout, non-2xx), with backoff from 0.5 s doubling up to 30 s; then the batch is dropped and counted."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return base_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"at least {MIN_SECRET_BYTES} bytes (python3 -c 'import secrets; print(secrets.token_urlsafe(48))')")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0.1 <= value <= 60:
            raise ValueError("must be between 0.1s and 60s")
        return value


class Audit(Model):
    """Audit events (logins, refusals, logouts, reloads) as JSON lines, apart from the access log and the app log."""

    enabled: bool = True
    """Write audit events; false drops them all (the webhook too)."""
    sink: Literal["stdout", "file"] = "stdout"
    """`stdout` (the access and app logs go to stderr), or `file` at `path`."""
    path: Path | None = None
    """With `sink: file`: the file events are appended to (reopened when logrotate moves it); relative to the config file."""
    webhook: AuditWebhook | None = None
    """Also deliver every event to a webhook; off while absent."""

    @model_validator(mode="after")
    def _file_needs_path(self) -> "Audit":
        if self.sink == "file" and self.path is None:
            raise ValueError("path: required with sink: file")
        if self.sink != "file" and self.path is not None:
            raise ValueError("path: only with sink: file")
        return self
