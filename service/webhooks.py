"""The handoff webhook sender: delivers outbox rows over HTTP, signed, with retries and backoff.

The only module that makes outbound HTTP besides the model client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime

import httpx
from anyio import to_thread

from .models import OutboxEvent, OutboxStatus, utcnow
from .outbox import Outbox, deliver_forever
from .telemetry import metrics, tracing

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Supportbot-Signature"
TIMESTAMP_HEADER = "X-Supportbot-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>` HMAC of `<timestamp>.<body>`, so a receiver can reject replays of old requests."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance: float = 300.0) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class WebhookSender:
    """Delivers due outbox rows to one URL; one pass with `deliver_due`, forever with `run`."""

    def __init__(
        self, outbox: Outbox, url: str, secret: str, *, timeout: float, max_attempts: int,
        client: httpx.AsyncClient | None = None, clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.outbox = outbox
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.client = client or httpx.AsyncClient(timeout=timeout)
        self.timeout = timeout
        self.clock = clock
        self.host = httpx.URL(url).host  # for the delivery's span: the receiver, not its path or query

    async def deliver_due(self) -> int:
        """Send every row that is due now; returns how many were delivered."""
        rows = await to_thread.run_sync(lambda: self.outbox.claim_due(self.clock(), lease_seconds=self.timeout * 3))
        delivered = 0
        for row in rows:
            delivered += await self._deliver(row)
        return delivered

    async def _deliver(self, row: OutboxEvent) -> int:
        payload = dict(row.payload)
        span = tracing.start_remote_child(payload.pop(tracing.OUTBOX_TRACE_KEY, None), "supportbot.webhook.deliver",
                                          {"supportbot.outbox_id": row.id, "supportbot.event": row.event,
                                           "http.request.method": "POST", "server.address": self.host})
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "supportbot-webhook/1",
            "Idempotency-Key": row.idempotency_key,
            "X-Supportbot-Event": row.event,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        tracing.inject(span, headers)
        try:
            response = await self.client.post(self.url, content=body, headers=headers, timeout=self.timeout)
            error = None if response.is_success else f"HTTP {response.status_code}"
            span.set_attribute("http.response.status_code", response.status_code)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            tracing.fail(span, exc)
        finally:
            span.end()
        if error is None:
            await to_thread.run_sync(self.outbox.mark_delivered, row.id, self.clock())
            metrics.record_webhook_delivery("delivered")
            log.info("webhook delivered outbox=%s event=%s", row.id, row.event)
            return 1
        status = await to_thread.run_sync(self.outbox.mark_failed, row.id, error, self.clock(), self.max_attempts)
        metrics.record_webhook_delivery("erased" if status is None else "dead" if status == OutboxStatus.DEAD
                                        else "retry")
        log.warning("webhook failed outbox=%s attempt=%s status=%s: %s", row.id, row.attempts + 1, status, error)
        return 0

    async def run(self, interval: float) -> None:
        """Deliver forever, looking for due rows every `interval` seconds."""
        await deliver_forever(self.deliver_due, interval, "webhook")

    async def aclose(self) -> None:
        await self.client.aclose()
