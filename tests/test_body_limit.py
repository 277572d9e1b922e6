"""Oversized request bodies, sent to a real server: the client reads the 413 error, not a connection reset."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from service.api import create_app
from service.runtime import Runtime

from .conftest import make_settings
from .upstream_server import serving

ONE_MB = b'{"content": "' + b"a" * (1024 * 1024) + b'"}'
ROUNDS = 20


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """The service (default 64 KiB body limit) on a real port, served by uvicorn as `supportbot serve` does."""
    tmp = tmp_path_factory.mktemp("body-limit")
    shutil.copy(sqlite_template, tmp / "supportbot.db")
    runtime = Runtime.build(make_settings(tmp, f"sqlite:///{tmp / 'supportbot.db'}"))
    with serving(create_app(runtime=runtime)) as base:
        yield base


def post_with_urllib(url: str, body: bytes) -> tuple[int, object]:
    """POST as Python's standard library does it (it writes the whole body, then reads); status and JSON."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def exchange(base: str, head: str, chunks: list[bytes], pause: float = 0) -> bytes:
    """Over a raw socket: write the request head and every chunk of the body, then read the whole answer."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(head.encode("ascii"))
        for chunk in chunks:
            connection.sendall(chunk)
        time.sleep(pause)  # only for the client that stops sending: it waits, as a slow or lying client does
        answer = b""
        while block := connection.recv(65536):
            answer += block
    return answer


def status_and_error(answer: bytes) -> tuple[str, str]:
    """The status line and the error code of an HTTP/1.1 answer with a JSON body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), json.loads(body)["error"]["code"]


def request_head(path: str, *headers: str) -> str:
    """A request head that asks the server to close the connection afterwards, as urllib does."""
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: supportbot.test", "Content-Type: application/json",
                        "Connection: close", *headers, "", ""])


def test_one_megabyte_body_from_urllib_gets_the_413_error_every_time(
    base_url: str, reliability: list[dict[str, object]]
) -> None:
    answers = [post_with_urllib(f"{base_url}/api/conversations", ONE_MB) for _ in range(ROUNDS)]

    expected = (413, {"error": {"code": "payload_too_large", "message": "request body over 65536 bytes"}})
    assert answers == [expected] * ROUNDS
    reliability.append({"section": "attacks", "item": f"1 MB body x{ROUNDS} from urllib (64 KiB limit, real server)",
                        "result": "every one answered 413 payload_too_large, no connection reset"})


def test_raw_client_writing_the_whole_body_before_reading_gets_the_413_every_time(
    base_url: str, reliability: list[dict[str, object]]
) -> None:
    head = request_head("/api/conversations", f"Content-Length: {len(ONE_MB)}")

    answers = [status_and_error(exchange(base_url, head, [ONE_MB])) for _ in range(ROUNDS)]

    assert answers == [("HTTP/1.1 413 Request Entity Too Large", "payload_too_large")] * ROUNDS
    reliability.append({"section": "attacks", "item": f"1 MB body x{ROUNDS} from a raw socket, written whole before "
                        "reading", "result": "every one answered 413 payload_too_large"})


def test_chunked_body_without_a_content_length_gets_the_413(
    base_url: str, reliability: list[dict[str, object]]
) -> None:
    head = request_head("/api/conversations", "Transfer-Encoding: chunked")
    pieces = [ONE_MB[i:i + 32768] for i in range(0, len(ONE_MB), 32768)]
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]

    answers = [status_and_error(exchange(base_url, head, chunks)) for _ in range(5)]

    assert answers == [("HTTP/1.1 413 Request Entity Too Large", "payload_too_large")] * 5
    reliability.append({"section": "attacks", "item": "1 MB chunked body x5, no Content-Length",
                        "result": "every one answered 413 payload_too_large"})


def test_client_announcing_more_than_it_sends_still_gets_the_413(base_url: str) -> None:
    head = request_head("/api/conversations", f"Content-Length: {len(ONE_MB)}")

    started = time.monotonic()
    answer = exchange(base_url, head, [ONE_MB[:100_000]], pause=0.2)

    assert status_and_error(answer) == ("HTTP/1.1 413 Request Entity Too Large", "payload_too_large")
    assert time.monotonic() - started < 15, "the server gives up reading after a short deadline"


def test_client_expecting_100_continue_gets_the_413_without_being_asked_for_the_body(base_url: str) -> None:
    head = request_head("/api/conversations", f"Content-Length: {len(ONE_MB)}", "Expect: 100-continue")

    started = time.monotonic()
    answer = exchange(base_url, head, [])

    assert status_and_error(answer) == ("HTTP/1.1 413 Request Entity Too Large", "payload_too_large")
    assert time.monotonic() - started < 2, "answered at once, not after the drain deadline"


def test_body_under_the_limit_still_reaches_the_route(base_url: str) -> None:
    status, body = post_with_urllib(f"{base_url}/api/conversations", b"{}")

    assert status == 201 and isinstance(body, dict) and body["token"], body
