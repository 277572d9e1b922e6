"""A database outage is told as it is: 503, what could not be stored, and when to send again."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from service.api import create_app
from service.runtime import Runtime

from .conftest import make_settings
from .factories import send, start_conversation

pytestmark = pytest.mark.postgres


class DatabaseLink:
    """A TCP forwarder in front of PostgreSQL: `cut` is the database going away, `restore` it coming back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        """Listen (again, on the same port) and forward every connection to PostgreSQL."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a stopped database server does."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone leaves a listener blocked in accept() alive on Linux: shutdown() wakes it.
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def link(postgres_schema_url: str) -> Iterator[DatabaseLink]:
    url = make_url(postgres_schema_url)
    forwarder = DatabaseLink((url.host or "127.0.0.1", url.port or 5432))
    yield forwarder
    forwarder.cut()


def _through(url: str, link: DatabaseLink) -> str:
    return make_url(url).set(host="127.0.0.1", port=link.port).render_as_string(hide_password=False)


def _assert_told_the_truth(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "nothing you sent was lost" not in error["message"]
    assert "could not be stored" in error["message"]
    assert response.headers["Retry-After"].isdigit()


async def test_a_message_sent_while_the_database_is_down_is_reported_unstored_and_a_resend_works(
    tmp_path: Path, postgres_schema_url: str, link: DatabaseLink
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, _through(postgres_schema_url, link)))
    # What a client sees: the response, not the exception the server logs.
    transport = httpx.ASGITransport(app=create_app(runtime=runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        conversation_id, auth = await start_conversation(client)
        assert (await send(client, conversation_id, auth, "How do I reset my password?")).status_code == 200

        link.cut()
        down = await send(client, conversation_id, auth, "And how do I export my data?", client_message_id="m-2")
        _assert_told_the_truth(down)
        streamed = await client.post(f"/api/conversations/{conversation_id}/messages", headers={
            **auth, "Accept": "text/event-stream"}, json={"content": "still there?", "client_message_id": "m-3"})
        _assert_told_the_truth(streamed)
        _assert_told_the_truth(await client.post("/api/conversations"))
        reading = await client.get(f"/api/conversations/{conversation_id}", headers=auth)
        assert reading.status_code == 503 and "try again" in reading.json()["error"]["message"]

        link.restore()
        again = await send(client, conversation_id, auth, "And how do I export my data?", client_message_id="m-2")
        assert again.status_code == 200, again.text
    await runtime.aclose()

    direct = create_engine(postgres_schema_url)
    with direct.connect() as connection:
        stored = connection.execute(text("SELECT content FROM messages WHERE conversation_id = :c AND role = 'user' "
                                         "ORDER BY id"), {"c": conversation_id}).scalars().all()
    direct.dispose()
    assert stored == ["How do I reset my password?", "And how do I export my data?"], (
        "the message sent during the outage was indeed not stored; the resend stored it once")
