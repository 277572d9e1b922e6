"""The visitor's message is committed while the model is asked, and nothing reaches the visitor (or is stored or
done for the turn) before that commit has landed; a commit that fails ends the turn with the database's error.

The commit of the turn's first write is held (tests/commit_hook.py) until the fake model has been asked: with the
model asked only after the commit, the hold would time out and the test fail.
"""

from __future__ import annotations

from typing import Any

import httpx
import respx
from sqlalchemy import select

from service.models import Message
from service.runtime import Runtime

from . import fake_model
from .commit_hook import commit_hook
from .factories import parse_sse, send, start_conversation


def _stored(runtime: Runtime, conversation_id: str) -> list[tuple[str, str]]:
    with runtime.log.sessions() as session:
        return [(m.role, m.content) for m in session.scalars(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id))]


async def test_the_model_is_asked_while_the_message_commits_and_both_are_stored(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    conversation_id, auth = await start_conversation(hosted_client)
    with commit_hook(hosted_runtime.log.engine) as hook:
        def answer(_request: httpx.Request) -> httpx.Response:
            hook.asked.set()
            return fake_model.completion("Clear your browser cache.")

        model_mock.post("/chat/completions").mock(side_effect=answer)
        hook.arm()
        response = await send(hosted_client, conversation_id, auth, "My dashboard takes forever to load")

    assert response.status_code == 200, response.text
    assert hook.asked_while_committing == [True], "the model was asked only after the message's commit"
    assert response.json()["reply"]["content"] == "Clear your browser cache."
    assert _stored(hosted_runtime, conversation_id) == [
        ("user", "My dashboard takes forever to load"), ("assistant", "Clear your browser cache.")]


async def test_a_failed_commit_shows_nothing_stores_nothing_and_the_next_message_works(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    conversation_id, auth = await start_conversation(hosted_client)
    with commit_hook(hosted_runtime.log.engine, fail=True) as hook:
        def streamed(_request: httpx.Request) -> httpx.Response:
            hook.asked.set()
            return fake_model.stream(fake_model.text_chunks(["Clear your ", "browser cache."]))

        model_mock.post("/chat/completions").mock(side_effect=streamed)
        hook.arm()
        events = await hosted_client.post(f"/api/conversations/{conversation_id}/messages",
                                          headers={**auth, "Accept": "text/event-stream"},
                                          json={"content": "My dashboard takes forever to load"})
        assert hook.asked_while_committing == [True]
        assert events.status_code == 200  # the stream had begun: the error is its event
        told = parse_sse(events.text)
        assert [name for name, _ in told] == ["error"], "no text of a reply to a message that was not stored"
        error: Any = told[0][1]["error"]
        assert error["code"] == "database_unavailable" and "could not be stored" in error["message"]

        hook.asked.clear()
        hook.arm()
        plain = await send(hosted_client, conversation_id, auth, "Are you there?")
        assert hook.asked_while_committing == [True, True]
        assert plain.status_code == 503, plain.text
        assert plain.json()["error"]["code"] == "database_unavailable"
        assert plain.headers["Retry-After"].isdigit()
    assert _stored(hosted_runtime, conversation_id) == [], "neither message nor any reply to it was stored"

    model_mock.post("/chat/completions").mock(return_value=fake_model.completion("Yes, I am here."))
    again = await send(hosted_client, conversation_id, auth, "Are you there?")
    assert again.status_code == 200, again.text
    assert _stored(hosted_runtime, conversation_id) == [("user", "Are you there?"), ("assistant", "Yes, I am here.")]
