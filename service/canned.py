"""Canned replies: saved answers an agent picks by shortcut in the reply box; admins write them.

A shortcut is written `/refund` or `refund` (the slash is how agents type it, not part of the name): letters,
digits, `-` and `_`, 1 to 50 characters, unique without regard to case.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import Conflict, NotFound, Unprocessable
from .models import CannedReply, utcnow
from .review import audit

SHORTCUT = re.compile(r"/?([A-Za-z0-9_-]{1,50})")
MAX_TITLE = 200
MAX_CONTENT = 4000  # an agent's reply is checked against SUPPORTBOT_MAX_MESSAGE_CHARS again when sent


@dataclass(frozen=True, slots=True)
class CannedChange:
    """New values for a canned reply; None leaves a field as it is."""

    shortcut: str | None = None
    title: str | None = None
    content: str | None = None


def normal_shortcut(shortcut: str) -> str:
    """`/Refund` -> `refund`; a clear 422 for anything else than letters, digits, - and _."""
    match = SHORTCUT.fullmatch(shortcut.strip())
    if match is None:
        raise Unprocessable("a shortcut is 1 to 50 letters, digits, - or _, optionally after a /: like /refund",
                            code="invalid_shortcut")
    return match.group(1).lower()


def _text(value: str, name: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise Unprocessable(f"the {name} is empty", code=f"empty_{name}")
    if len(text) > limit:
        raise Unprocessable(f"the {name} is {len(text)} characters; the limit is {limit}", code=f"{name}_too_long")
    return text


class CannedReplies:
    """Storage of canned replies; writes are audited (the shortcut, never the text)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def all(self) -> list[CannedReply]:
        """Every canned reply, by shortcut."""
        with self.sessions() as session:
            return list(session.scalars(select(CannedReply).order_by(CannedReply.shortcut)))

    def get(self, reply_id: int) -> CannedReply:
        """One canned reply, or 404."""
        with self.sessions() as session:
            return _found(session, reply_id)

    def text_of(self, shortcut: str) -> str:
        """The content saved under a shortcut (`/refund` or `refund`), or 422."""
        name = normal_shortcut(shortcut)
        with self.sessions() as session:
            content = session.scalar(select(CannedReply.content).where(CannedReply.shortcut == name))
        if content is None:
            raise Unprocessable(f"no canned reply /{name}", code="unknown_canned_reply")
        return content

    def create(self, shortcut: str, title: str, content: str, actor: str) -> CannedReply:
        """A new canned reply (409 when its shortcut is taken)."""
        reply = CannedReply(shortcut=normal_shortcut(shortcut), title=_text(title, "title", MAX_TITLE),
                            content=_text(content, "content", MAX_CONTENT), updated_by=actor, updated_at=utcnow())
        with _unique_shortcut(reply.shortcut), transaction(self.sessions) as session:
            _refuse_taken(session, reply.shortcut, None)
            session.add(reply)
            session.flush()
            audit(session, actor, "canned.create", f"canned:{reply.id}", {"shortcut": reply.shortcut})
        return reply

    def update(self, reply_id: int, change: CannedChange, actor: str) -> CannedReply:
        """Change a canned reply's shortcut, title or content."""
        shortcut = normal_shortcut(change.shortcut) if change.shortcut is not None else None
        title = _text(change.title, "title", MAX_TITLE) if change.title is not None else None
        content = _text(change.content, "content", MAX_CONTENT) if change.content is not None else None
        with _unique_shortcut(shortcut or ""), transaction(self.sessions) as session:
            reply = _found(session, reply_id)
            if shortcut is not None:
                _refuse_taken(session, shortcut, reply_id)
                reply.shortcut = shortcut
            reply.title = title if title is not None else reply.title
            reply.content = content if content is not None else reply.content
            reply.updated_by, reply.updated_at = actor, utcnow()
            audit(session, actor, "canned.update", f"canned:{reply_id}",
                  {"shortcut": reply.shortcut, "fields": [k for k, v in
                                                          (("shortcut", shortcut), ("title", title),
                                                           ("content", content)) if v is not None]})
        return reply

    def delete(self, reply_id: int, actor: str) -> None:
        """Remove a canned reply."""
        with transaction(self.sessions) as session:
            reply = _found(session, reply_id)
            audit(session, actor, "canned.delete", f"canned:{reply_id}", {"shortcut": reply.shortcut})
            session.delete(reply)


def _found(session: Session, reply_id: int) -> CannedReply:
    reply = session.get(CannedReply, reply_id)
    if reply is None:
        raise NotFound("canned reply not found")
    return reply


def _refuse_taken(session: Session, shortcut: str, own_id: int | None) -> None:
    taken = session.scalar(select(CannedReply.id).where(func.lower(CannedReply.shortcut) == shortcut))
    if taken is not None and taken != own_id:
        raise Conflict(f"the shortcut /{shortcut} is taken", code="duplicate_shortcut")


@contextmanager
def _unique_shortcut(shortcut: str) -> Iterator[None]:
    """Turns the unique index's refusal (two admins saving one shortcut at once) into the same 409."""
    try:
        yield
    except IntegrityError:
        raise Conflict(f"the shortcut /{shortcut} is taken", code="duplicate_shortcut") from None
