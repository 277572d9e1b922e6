"""How `supportbot serve` runs uvicorn: bounded request headers, bounded connections, the file limit.

uvicorn's default HTTP parser (httptools) accepts headers of any size and waits for them forever: one
client sending a 30 MB header, or trickling a byte a second, holds memory or a file descriptor for as
long as it likes. `BoundedHttpToolsProtocol` answers 431 past `SUPPORTBOT_MAX_HEADER_BYTES` and 408 past
`SUPPORTBOT_HEADER_TIMEOUT`; a reverse proxy in front (nginx, Caddy) is still the first line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Settings, get_settings

log = logging.getLogger("supportbot")

# After a refusal, read and drop what the client is still sending (up to this much, this long) so that it
# sees the answer instead of a connection reset.
DRAIN_BYTES = 4 * 1024 * 1024
DRAIN_SECONDS = 2.0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.run() arguments that bound what one client can hold."""
    return {
        "http": BoundedHttpToolsProtocol,
        "limit_concurrency": settings.limit_concurrency or None,
        "timeout_keep_alive": settings.keep_alive_timeout,
    }


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning("could not raise the open-file limit from %s to %s: %s", soft, hard, error)
    shown = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    log.info("open-file limit: %s (each connection holds one)", shown)
    return soft


def _error_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on header bytes and on the time to send them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._max_header_bytes = settings.max_header_bytes
        self._header_timeout = settings.header_timeout
        self._header_bytes = 0
        # A connection starts waiting for its first request's headers.
        self._awaiting_headers = True
        self._request_begun = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._drained = -1  # >= 0 once refused: bytes read and dropped since

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection and start the clock for its first request's headers."""
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its timer."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse, unless the headers are past their size limit (431)."""
        if self._drained >= 0:
            self._drain(len(data))
            return
        super().data_received(data)
        if not self._awaiting_headers or self.transport.is_closing():
            return
        # The headers are still incomplete after this chunk, so all of it was header bytes.
        self._header_bytes += len(data)
        if self._header_bytes > self._max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large", "headers_too_large",
                         f"request headers are larger than {self._max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        """A request starts: its headers must arrive within the header timeout."""
        super().on_message_begin()
        self._request_begun = True
        if not self._awaiting_headers:
            self._awaiting_headers = True
            self._header_bytes = 0
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        """The headers are in: stop their clock and count."""
        self._awaiting_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self._header_timeout, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers or self.transport.is_closing():
            return
        if not self._request_begun:
            # Nothing sent yet (a browser's preconnect, say): close quietly, as nginx does; a 408 there
            # could be read as the answer to the request the browser writes next.
            self.transport.close()
            return
        self._refuse(408, "Request Timeout", "header_timeout",
                     f"request headers did not arrive within {self._header_timeout:g} s")

    def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
        self.logger.warning("%s: refused with %d (%s)", self.client and self.client[0], status, code)
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        self.transport.write(_error_response(status, reason, code, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._drained = 0
        self.loop.call_later(DRAIN_SECONDS, self.transport.close)

    def _drain(self, size: int) -> None:
        self._drained += size
        if self._drained > DRAIN_BYTES:
            self.transport.close()
