"""Verifying that a request came from Slack: the v0 signature of its timestamp and body, and a fresh timestamp."""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
TOLERANCE_SECONDS = 300  # Slack's advice: older requests may be replays


class SignatureRefused(Exception):
    """The request is not from Slack, or is too old; the message says which, for the audit log."""


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v0=<hex>` HMAC-SHA256 of `v0:{timestamp}:{body}`, as Slack signs its requests."""
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def verify_slack_request(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None
) -> None:
    """Raise SignatureRefused unless `signature` signs `body` at `timestamp` within five minutes of now."""
    if not timestamp or not signature:
        raise SignatureRefused("missing signature or timestamp")
    if not timestamp.isdigit():
        raise SignatureRefused("malformed timestamp")
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureRefused("stale timestamp")
    if not hmac.compare_digest(slack_signature(secret, timestamp, body).encode(), signature.encode()):
        raise SignatureRefused("signature does not match")
