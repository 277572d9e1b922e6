"""`supportbot serve` bounds what one client can hold: header size, header time, connections, files."""

from __future__ import annotations

import resource
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from .processes import ServiceProcess

HEADER_TIMEOUT = 2.0
REQUEST_START = b"GET /healthz HTTP/1.1\r\nHost: t\r\n"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path, SUPPORTBOT_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
                             SUPPORTBOT_LIMIT_CONCURRENCY="5", SUPPORTBOT_MAX_HEADER_BYTES="65536")
    process.migrate()
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _rss_kib(service: ServiceProcess) -> int:
    assert service.process is not None
    for line in Path(f"/proc/{service.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _connect(service: ServiceProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=30)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket timeout is the deadline)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_1_mb_header_gets_431_at_once(service: ServiceProcess, reliability: list[dict[str, object]]) -> None:
    started = time.monotonic()
    with _connect(service) as sock:
        sock.sendall(REQUEST_START + b"X-Filler: " + b"a" * 1024 * 1024 + b"\r\n\r\n")
        answer = _read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert b'"code": "headers_too_large"' in answer
    assert time.monotonic() - started < 10
    reliability.append({"section": "attacks", "item": "1 MB request header (64 KiB limit, real server)",
                        "result": "431 headers_too_large, read to the end, no connection reset"})


FLOOD = b"X-Filler: " + b"a" * 30 * 1024 * 1024


def _push_unfinished_header(service: ServiceProcess) -> None:
    """30 MB of one header line that never ends; the server may cut it off (that is the point)."""
    with _connect(service) as sock:
        try:
            sock.sendall(REQUEST_START + FLOOD)
            _read_until_closed(sock)
        except OSError:
            pass


def test_unfinished_huge_headers_do_not_grow_the_process(
    service: ServiceProcess, reliability: list[dict[str, object]]
) -> None:
    before = _rss_kib(service)
    senders = [threading.Thread(target=_push_unfinished_header, args=(service,)) for _ in range(10)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=120)
    grown_mib = (_rss_kib(service) - before) / 1024

    assert not any(sender.is_alive() for sender in senders), "the server kept reading a header forever"
    # the issue measured +345 MiB for ten unfinished 30 MB headers, held for good
    assert grown_mib < 40, f"RSS grew by {grown_mib:.0f} MiB"
    assert httpx.get(f"{service.base}/healthz", timeout=5).status_code == 200
    reliability.append({"section": "attacks", "item": "ten unfinished 30 MB headers at once (real server)",
                        "result": f"each cut off with 431; process RSS grew {max(grown_mib, 0):.0f} MiB"})


def test_ordinary_large_headers_still_pass(service: ServiceProcess) -> None:
    response = httpx.get(f"{service.base}/healthz", headers={"Cookie": "c=" + "x" * 16000}, timeout=5)

    assert response.status_code == 200


def test_a_client_trickling_headers_is_cut_off_with_408(
    service: ServiceProcess, reliability: list[dict[str, object]]
) -> None:
    with _connect(service) as sock:
        sock.sendall(REQUEST_START)
        sock.settimeout(0.2)
        deadline = time.monotonic() + HEADER_TIMEOUT + 20
        answer = b""
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X")  # a byte at a time, never the blank line
            except OSError:
                break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200] or "the server kept the connection open"
    assert b'"code": "header_timeout"' in answer
    reliability.append({"section": "attacks", "item": "headers trickled a byte at a time (2 s header timeout)",
                        "result": "408 header_timeout, connection closed"})


def _wait_for(condition: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {condition}")


def test_past_limit_concurrency_new_requests_get_503_until_slow_clients_are_cut_off(
    service: ServiceProcess, reliability: list[dict[str, object]]
) -> None:
    with ExitStack() as stack:
        # five connections that never finish their headers fill SUPPORTBOT_LIMIT_CONCURRENCY=5
        for _ in range(5):
            sock = stack.enter_context(_connect(service))
            sock.sendall(REQUEST_START)
        busy = httpx.get(f"{service.base}/healthz", timeout=5)
        # the header timeout closes the slow ones; health checks come back without a restart
        _wait_for("/healthz to answer 200 again",
                  lambda: httpx.get(f"{service.base}/healthz", timeout=5).status_code == 200)

    assert busy.status_code == 503
    assert busy.text == "Service Unavailable", "uvicorn's own answer, before the app is called"
    reliability.append({"section": "attacks", "item": "slow connections filling limit_concurrency (5)",
                        "result": "new requests 503 while they hold; /healthz 200 again once the header "
                                  "timeout closes them, no restart"})


def test_serve_raises_the_open_file_limit_and_logs_it(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard open-file limit here is {hard}: nothing to raise to")
    process = ServiceProcess(tmp_path)
    process.migrate()
    # the service inherits a low soft limit, as under a default systemd or shell `ulimit -n 256`
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        process.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert process.process is not None
        limits = Path(f"/proc/{process.process.pid}/limits").read_text()
        in_force = next(line.split()[3] for line in limits.splitlines() if line.startswith("Max open files"))
        log = process.log_path.read_text()
    finally:
        process.stop()

    assert in_force == str(hard)
    assert f"open-file limit: {hard}" in log


def test_an_idle_connection_that_never_sends_is_closed_quietly(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.settimeout(HEADER_TIMEOUT + 20)
        answer = _read_until_closed(sock)

    # a browser's unused preconnect: closed after the header timeout, with no 408 to misread later
    assert answer == b""
