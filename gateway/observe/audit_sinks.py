"""Where audit events go (``audit`` in the config): stdout or a file, and optionally a signed webhook.

The sinks are handlers of the ``gateway.audit`` logger, installed when an app
starts and removed when it stops, so the lines never mix with the access log or
the app log (both on stderr). The audit logger logs at INFO whatever
``--log-level`` says: the trail does not depend on how chatty the app log is.

The webhook never slows a request: an event is put on a bounded queue
(``queue_size``; full: the event is dropped and
``gateway_audit_events_dropped_total{reason="queue_full"}`` counts it) and one
background task delivers what waits, up to ``BATCH`` events per POST as
newline-delimited JSON. A failed delivery (connection refused, timeout, a non-2xx
answer) is tried again ``max_retries`` times with backoff (``BACKOFF_FIRST``
doubling up to ``BACKOFF_MAX``, with jitter), then dropped and counted
(``reason="delivery_failed"``). At shutdown the waiting events get ``timeout``
to be delivered, then the task is cancelled and what is left is counted
(``reason="shutdown"``).

Every body is signed: ``X-Gateway-Signature: t=<unix time>,v1=<hex>`` where
``<hex>`` is HMAC-SHA256 with ``audit.webhook.secret`` over ``<t>.`` followed by
the body's bytes (``signature``); docs/audit.md shows the receiver's check.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import logging.handlers
import random
import sys
import threading
import time

import aiohttp

from gateway.config.audit import Audit, AuditWebhook
from gateway.observe.audit import LOGGER, AuditFormatter
from gateway.observe.logs import warn_repeated
from gateway.observe.metrics import Metrics

__all__ = ["BATCH", "SIGNATURE_HEADER", "AuditSinks", "Webhook", "signature"]

SIGNATURE_HEADER = "X-Gateway-Signature"
CONTENT_TYPE = "application/x-ndjson"
BATCH = 100  # events per POST at most
BACKOFF_FIRST = 0.5  # seconds before the first retry, doubled for each next one
BACKOFF_MAX = 30.0

log = logging.getLogger("gateway")


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Gateway-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (0-based): doubling from ``BACKOFF_FIRST``, capped, with jitter."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** attempt)) * random.uniform(0.8, 1.2)


class Webhook:
    """The queue and the background task that delivers it."""

    def __init__(self, settings: AuditWebhook, metrics: Metrics) -> None:
        self.settings = settings
        self.secret = settings.secret.get_secret_value().encode()
        self.metrics = metrics
        self.queue: asyncio.Queue[str] = asyncio.Queue(settings.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.get_ident()
        self._in_flight = 0  # events of the batch being delivered

    def _dropped(self, reason: str, count: int = 1) -> None:
        self.metrics.audit_dropped.labels(reason).inc(count)

    def offer(self, line: str) -> None:
        """Queue one event for delivery; never waits (a full queue drops it, counted)."""
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self.offer, line)
            return
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self._dropped("queue_full")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                              timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        self._task = self._loop.create_task(self._run(), name="audit-webhook")

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._in_flight = len(batch)
            try:
                if not await self._deliver(batch):
                    self._dropped("delivery_failed", len(batch))
            finally:
                self._in_flight = 0
                for _ in batch:
                    self.queue.task_done()

    async def _deliver(self, batch: list[str]) -> bool:
        assert self._session is not None
        body = ("\n".join(batch) + "\n").encode()
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                await asyncio.sleep(backoff(attempt - 1))
            headers = {"Content-Type": CONTENT_TYPE, SIGNATURE_HEADER: signature(self.secret, int(time.time()), body)}
            try:
                async with self._session.post(self.settings.url, data=body, headers=headers,
                                              allow_redirects=False) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                problem = type(exc).__name__
            warn_repeated(log, "audit webhook: delivery of %d event(s) failed (%s), attempt %d of %d",
                          len(batch), problem, attempt + 1, self.settings.max_retries + 1, key="audit-webhook")
        return False

    async def close(self) -> None:
        """Deliver what waits, for up to ``timeout``; then stop, counting what is left as dropped."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self.queue.join(), self.settings.timeout)
            except asyncio.TimeoutError:
                pass
            left = self.queue.qsize() + self._in_flight
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            if left:
                self._dropped("shutdown", left)
        if self._session is not None:
            await self._session.close()
            self._session = None


class _ToWebhook(logging.Handler):
    def __init__(self, webhook: Webhook) -> None:
        super().__init__()
        self.webhook = webhook

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.webhook.offer(self.format(record))
        except Exception:
            self.handleError(record)


class AuditSinks:
    """The ``gateway.audit`` logger's handlers for one app, per ``audit``; ``start`` and ``close`` bracket its life."""

    def __init__(self, settings: Audit, metrics: Metrics) -> None:
        self.settings = settings
        self.webhook = Webhook(settings.webhook, metrics) if settings.enabled and settings.webhook else None
        self._handlers: list[logging.Handler] = []

    async def start(self) -> None:
        if not self.settings.enabled:
            return
        logger = logging.getLogger(LOGGER)
        logger.setLevel(logging.INFO)
        handler: logging.Handler
        if self.settings.sink == "file":
            assert self.settings.path is not None
            handler = logging.handlers.WatchedFileHandler(self.settings.path, encoding="utf-8")
        else:
            handler = logging.StreamHandler(sys.stdout)
        self._handlers.append(handler)
        if self.webhook is not None:
            await self.webhook.start()
            self._handlers.append(_ToWebhook(self.webhook))
        for handler in self._handlers:
            handler.setFormatter(AuditFormatter())
            logger.addHandler(handler)

    async def close(self) -> None:
        logger = logging.getLogger(LOGGER)
        for handler in self._handlers:
            logger.removeHandler(handler)
            handler.close()
        self._handlers.clear()
        if self.webhook is not None:
            await self.webhook.close()
