"""The service as a new user runs it: a real process on a real port, the README's curl flow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

from .factories import parse_sse
from .processes import ServiceProcess
from .test_webhooks import Receiver


@contextmanager
def service_process(tmp_path: Path, **extra_env: str) -> Iterator[tuple[str, Path]]:
    """`supportbot db upgrade` then `supportbot serve` with no API key, in a fresh data dir."""
    service = ServiceProcess(tmp_path, **extra_env)
    service.migrate()
    service.start()
    try:
        yield service.base, service.log_path
    finally:
        service.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with service_process(tmp_path) as running:
        yield running


def test_fresh_service_streams_an_offline_answer(served: tuple[str, Path]) -> None:
    base, log_path = served
    created = httpx.post(f"{base}/api/conversations", timeout=5).json()
    auth = {"Authorization": f"Bearer {created['token']}", "Accept": "text/event-stream"}

    with httpx.stream("POST", f"{base}/api/conversations/{created['conversation_id']}/messages", headers=auth,
                      json={"content": "Export to CSV fails with an error"}, timeout=10) as response:
        pieces = list(response.iter_text())

    events = parse_sse("".join(pieces))
    assert response.status_code == 200
    assert [name for name, _ in events].count("delta") > 3
    assert events[-1][0] == "done"
    assert "CSV export fails" in events[-1][1]["reply"]["content"]  # type: ignore[index]
    startup = log_path.read_text()
    assert "provider=offline" in startup and "prompt=support@production" in startup
    assert "Export to CSV fails" not in startup, "logs carry ids, not message text"


def test_running_service_delivers_the_handoff_webhook(tmp_path: Path) -> None:
    receiver = Receiver([])
    try:
        with service_process(tmp_path, SUPPORTBOT_HANDOFF_WEBHOOK_URL=receiver.url,
                             SUPPORTBOT_OUTBOX_POLL_INTERVAL="0.2") as (base, _log):
            created = httpx.post(f"{base}/api/conversations", timeout=5).json()
            httpx.post(f"{base}/api/conversations/{created['conversation_id']}/messages", timeout=5,
                       headers={"Authorization": f"Bearer {created['token']}"},
                       json={"content": "Please delete my account and all my data"})
            deadline = time.monotonic() + 15
            while not receiver.accepted and time.monotonic() < deadline:
                time.sleep(0.1)
        secret = (tmp_path / "data" / "webhook_secret").read_text().strip()
        headers, body = receiver.requests[0]
        assert list(receiver.accepted.values()) == [1]
        assert verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        assert b'"reason":"policy:privacy"' in body
    finally:
        receiver.close()
