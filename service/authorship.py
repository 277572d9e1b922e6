"""Who wrote a message, as reviewers read it: the visitor, a model, a fixed text of the service, or an agent."""

from __future__ import annotations

from dataclasses import dataclass

from .handoff import HANDOFF_PROVIDER
from .interrupted import INTERRUPTED
from .models import Message, Origin, Role
from .providers.offline import OfflineProvider
from .store import REPLAY_PROVIDER


@dataclass(frozen=True, slots=True)
class Byline:
    """The header of one message on the conversation page: who, and what produced the text."""

    author: str
    origin: Origin
    source: str | None


def byline(message: Message) -> Byline:
    """Author and source of a message, each said once (never "offline offline")."""
    origin = Origin(message.origin)
    if origin == "visitor":
        return Byline("Customer", origin, None)
    if origin == "agent":
        return Byline(message.author or "Agent", origin, "human agent")
    if message.role == Role.SYSTEM:
        return Byline("System", origin, "service note")
    return Byline("Bot", origin, _fixed_source(message) if origin == "fixed" else model_source(message))


def model_source(message: Message) -> str:
    """What answered: "offline provider (knowledge base)" or "openai · gpt-4o-mini (reported …)"."""
    requested, reported = message.model_requested, message.model_reported
    if message.provider == OfflineProvider.name:
        # The offline provider also answers when the hosted model's circuit is open: say which it stood in for.
        stood_in = requested if requested and requested != OfflineProvider.model else None
        return "offline provider (knowledge base)" + (f" in place of {stood_in}" if stood_in else "")
    if message.provider == REPLAY_PROVIDER:
        return "replayed from a labeled case"
    name = requested or reported
    label = " · ".join(part for part in (message.provider or "unknown provider", name) if part)
    if reported and requested and reported != requested:
        label += f" (reported {reported})"
    return label


def _fixed_source(message: Message) -> str:
    if message.provider == HANDOFF_PROVIDER:
        return "fixed handoff text, no model"
    if message.provider == INTERRUPTED:
        return "fixed text: the turn was interrupted (its process stopped before replying)"
    if message.blocked_content is not None:
        return f"fixed text: the leak guard blocked the reply of {model_source(message)}"
    return f"fixed text: {model_source(message)} did not answer"
