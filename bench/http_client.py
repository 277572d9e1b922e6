"""A lean HTTP/1.1 keep-alive client on asyncio streams, for the load generator.

Why not httpx: the client shares a core with the mock upstream, and httpx spends roughly ten times the
CPU per request of this loop; it would become the bottleneck of the floor measurements. Here a request
is one write and a few reads, and every Server-Sent Event is time-stamped as its bytes arrive.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


class HttpError(Exception):
    """The server closed the connection or sent something this client cannot read."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    # (arrival time, raw event) for each Server-Sent Event of a streamed response
    events: list[tuple[float, bytes]] = field(default_factory=list)


class Connection:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                      stream: bool = False) -> Response:
        """Send one request and read the whole response (events time-stamped when `stream`)."""
        for attempt in (1, 2):
            reader, writer = await self._connect()
            head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in (headers or {}).items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            try:
                return await self._read(reader, stream)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                # A keep-alive connection the server had closed: retry once on a fresh one, and only
                # when nothing of the response arrived.
                self.close()
                stale = not isinstance(error, asyncio.IncompleteReadError) or not error.partial
                if attempt == 2 or not stale:
                    raise HttpError(f"connection lost: {error!r}") from None
        raise AssertionError("unreachable")

    async def _read(self, reader: asyncio.StreamReader, stream: bool) -> Response:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        response = Response(status, headers)
        if "content-length" in headers:
            response.body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            await self._read_chunked(reader, response, stream)
        else:
            response.body = await reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return response

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader, response: Response, stream: bool) -> None:
        pending = b""
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            data = (await reader.readexactly(size + 2))[:-2]
            if not stream:
                parts.append(data)
                continue
            arrived = time.perf_counter()
            pending += data.replace(b"\r\n", b"\n")
            while b"\n\n" in pending:
                event, pending = pending.split(b"\n\n", 1)
                if event.strip():
                    response.events.append((arrived, event))
        response.body = b"".join(parts)
