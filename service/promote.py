"""Promote a corrected answer to a known issue: a new entry in knowledge/promoted.md for a person to commit.

A miss fixed in the knowledge base costs nothing to serve: the next customer with the same question gets
the right answer from the prompt (or the offline provider), without any fine-tuning.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import Conflict, NotFound, Unprocessable
from .knowledge import KnowledgeStore, parse_knowledge_text, slugify, tokenize
from .models import Correction, Message, Role
from .review import audit, is_model_turn

PROMOTED_FILE = "promoted.md"
HEADER = ("# Promoted from reviewed conversations\n\n"
          "<!-- Entries added from the review page (`Add to knowledge base`). Edit them, then commit. -->\n")


@dataclass(frozen=True)
class Promoted:
    path: Path
    title: str
    line: int


def suggested_keywords(question: str, limit: int = 8) -> list[str]:
    """Content words of the customer's question, in order, without repeats."""
    words = re.findall(r"[A-Za-z][A-Za-z0-9+#.-]{2,}", question.lower())
    stems = tokenize([question])[0]
    kept = [w for w in dict.fromkeys(words) if any(w.startswith(s[:4]) for s in stems)]
    return kept[:limit] or ["question"]


def _answer_for(session: Session, message_id: int) -> tuple[str, str]:
    reply = session.get(Message, message_id)
    if reply is None:
        raise NotFound("message not found")
    if not is_model_turn(reply):
        raise Unprocessable("only bot replies can be promoted", code="not_a_bot_reply")
    correction = session.scalars(select(Correction.content).where(Correction.message_id == message_id)
                                 .order_by(Correction.id.desc())).first()
    if correction is None:
        correction = session.scalars(select(Message.content).where(
            Message.corrects_id == message_id, Message.role == Role.AGENT).order_by(Message.id.desc())).first()
    if correction is None:
        raise Unprocessable("write a correction first: the known issue's solution is the corrected answer",
                            code="no_correction")
    question = session.get(Message, reply.reply_to_id) if reply.reply_to_id else None
    return (question.content if question else ""), correction


def promote(sessions: sessionmaker[Session], knowledge: KnowledgeStore, message_id: int, actor: str,
            title: str | None = None, keywords: list[str] | None = None) -> Promoted:
    """Append the correction of a bot reply as a known issue; the file is validated before it is replaced."""
    with sessions() as session:
        question, answer = _answer_for(session, message_id)
    title = " ".join((title or question or "Promoted answer").split())[:80].rstrip(" ?.!") or "Promoted answer"
    if any(issue.id == slugify(title) for issue in knowledge.current().issues):
        raise Conflict(f"a known issue titled {title!r} exists already; choose another title",
                       code="duplicate_title")
    words = [k.strip().replace(",", " ") for k in (keywords or suggested_keywords(question)) if k.strip()]
    path = knowledge.root / PROMOTED_FILE
    current = path.read_text(encoding="utf-8") if path.exists() else HEADER
    entry = f"\n## {title}\nkeywords: {', '.join(words)}\n\n{answer.strip()}\n"
    updated = current.rstrip("\n") + "\n" + entry
    line = updated.count("\n", 0, updated.index(f"## {title}\n")) + 1
    parse_knowledge_text(updated, str(path))  # raises ConfigError, with the line, if it would break the file
    tmp = path.with_name(f".{PROMOTED_FILE}.{os.getpid()}.tmp")
    tmp.write_text(updated, encoding="utf-8")
    tmp.replace(path)
    with transaction(sessions) as session:
        audit(session, actor, "promote", f"message:{message_id}", {"file": str(path), "title": title})
    knowledge.reload()
    return Promoted(path, title, line)
