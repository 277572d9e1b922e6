"""Log lines as text or, with SUPPORTBOT_LOG_FORMAT=json, one JSON object per line.

The service logs ids, never what visitors or the model wrote; the JSON form lifts the ids of a line
(`conversation=... message=... reply=...`) into fields and adds the current trace's ids when tracing is on.
The same configuration serves the CLI and every `serve --workers` process (uvicorn applies it in each).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# `name=value` pairs of a log line that are ids, and the field each becomes.
ID_FIELDS = {"conversation": "conversation_id", "message": "message_id", "reply": "reply_id", "outbox": "outbox_id"}
_ID_PAIR = re.compile(r"\b(conversation|message|reply|outbox)=([\w-]+)")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids, trace_id and span_id (when tracing)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in _ID_PAIR.findall(message):
            entry.setdefault(ID_FIELDS[key], value)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the root logger on stderr, as text or JSON lines."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"supportbot": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "supportbot",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        # Migrations log every step at INFO; their warnings still show. httpx logs each request's full URL at
        # INFO, and an action's URL carries what the visitor gave (an order number, an e-mail): the service's own
        # lines name the action and its status instead.
        "loggers": {name: {"level": max(logging.WARNING, logging.getLevelName(level))}
                    for name in ("alembic", "httpx", "httpcore")},
    }
