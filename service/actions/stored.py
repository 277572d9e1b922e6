"""The action calls stored with each turn, as the readers of a conversation see them (admin API and page, the
visitor's data export): grouped under the message they belong to, oldest first.

A call belongs to the reply its turn ended with (`reply_id`); a call whose turn stored no reply yet belongs to the
visitor's message that started it, so nothing stored is hidden from an agent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..models import ActionCall


def calls_of(session: Session, conversation_id: str) -> list[ActionCall]:
    """Every action call of a conversation, oldest first."""
    return list(session.scalars(select(ActionCall).where(ActionCall.conversation_id == conversation_id)
                                .order_by(ActionCall.id)))


def by_message(calls: Iterable[ActionCall]) -> dict[int, list[ActionCall]]:
    """The calls under the message they belong to: the turn's reply, else the visitor's message."""
    grouped: dict[int, list[ActionCall]] = {}
    for call in calls:
        grouped.setdefault(call.reply_id if call.reply_id is not None else call.message_id, []).append(call)
    return grouped


def calls_by_message(sessions: sessionmaker[Session], conversation_id: str) -> dict[int, list[ActionCall]]:
    """`by_message` of a conversation's calls, read in one query (rows detached, every column loaded)."""
    with sessions() as session:
        return by_message(calls_of(session, conversation_id))


def clean_strings(value: Any, clean: Callable[[str], str]) -> Any:
    """`value` (arguments or a result: JSON data) with `clean` applied to every string in it, keys kept: a
    placeholder never breaks the JSON."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {key: clean_strings(item, clean) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_strings(item, clean) for item in value]
    return value


def clean_tool_content(text: str, clean: Callable[[str], str]) -> str:
    """A tool result (a JSON object as the model got it) with `clean` applied to each string in it."""
    try:
        data = json.loads(text)
    except ValueError:
        return clean(text)
    return json.dumps(clean_strings(data, clean), ensure_ascii=False, separators=(",", ":"))
