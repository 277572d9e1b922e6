"""SUPPORTBOT_LOG_FORMAT=json: one JSON object per line with ids and the trace's ids, never message text; in
process through the logging handlers, and from a real `supportbot serve` exporting its traces over OTLP."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.telemetry import tracing
from service.telemetry.logs import JsonFormatter

from .factories import send, start_conversation
from .processes import ServiceProcess

QUESTION = "My dashboard takes forever to load"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes through the JSON formatter while the test runs."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield written
    root.removeHandler(handler)
    root.setLevel(level)


def parsed(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_a_turns_line_has_its_ids_and_trace_and_no_text(
    client: httpx.AsyncClient, json_lines: io.StringIO
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        conversation_id, auth = await start_conversation(client)
        body = (await send(client, conversation_id, auth, QUESTION)).json()
    finally:
        tracing.shutdown()

    lines = parsed(json_lines.getvalue())
    turn = next(line for line in lines if line["logger"] == "service.turns")
    root = next(span for span in exporter.get_finished_spans() if span.name == "supportbot.turn")
    assert root.context is not None
    assert {"time", "level", "logger", "message"} <= turn.keys() and turn["level"] == "INFO"
    assert (turn["conversation_id"], turn["message_id"], turn["reply_id"]) == (
        conversation_id, str(body["message_id"]), str(body["reply"]["message_id"]))
    assert (turn["trace_id"], turn["span_id"]) == (f"{root.context.trace_id:032x}", f"{root.context.span_id:016x}")
    everything = json_lines.getvalue()
    assert QUESTION not in everything and body["reply"]["content"][:40] not in everything


def test_without_tracing_there_are_no_trace_ids_and_errors_keep_their_traceback(json_lines: io.StringIO) -> None:
    log = logging.getLogger("service.example")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("conversation=c1 outbox=7 failed")

    (line,) = [line for line in parsed(json_lines.getvalue()) if line["logger"] == "service.example"]
    assert (line["level"], line["conversation_id"], line["outbox_id"]) == ("ERROR", "c1", "7")
    assert "trace_id" not in line and "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")


class Collector:
    """An OTLP/HTTP receiver on this machine: counts what arrives at /v1/traces."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    collector.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_serve_writes_json_lines_with_trace_ids_and_exports_its_traces(tmp_path: Path) -> None:
    collector = Collector()
    service = ServiceProcess(tmp_path, SUPPORTBOT_LOG_FORMAT="json", OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                             OTEL_BSP_SCHEDULE_DELAY="100")
    service.migrate()
    try:
        service.start()
        with httpx.Client(base_url=service.base, timeout=30) as client:
            created = client.post("/api/conversations").json()
            auth = {"Authorization": f"Bearer {created['token']}"}
            reply = client.post(f"/api/conversations/{created['conversation_id']}/messages", headers=auth,
                                json={"content": QUESTION})
            assert reply.status_code == 200
    finally:
        service.stop()
        collector.close()

    text = service.log_path.read_text()
    lines = parsed(text)  # every line is a JSON object, uvicorn's own included
    assert {line["logger"] for line in lines} >= {"supportbot", "service.api.app", "service.turns", "uvicorn.error"}
    turn = next(line for line in lines if line["logger"] == "service.turns")
    assert turn["conversation_id"] == created["conversation_id"] and len(turn["trace_id"]) == 32
    assert QUESTION not in text and reply.json()["reply"]["content"][:40] not in text
    assert collector.bodies and any(bytes.fromhex(turn["trace_id"]) in body for body in collector.bodies), \
        "the turn's trace went to the OTLP endpoint"
