"""Escalation: when a human must take over a conversation, and why."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .llm import ESCALATE_TOOL_NAME, Completion

log = logging.getLogger(__name__)

MODEL_UNAVAILABLE = "model_unavailable"
MODEL_DECISION = "model_decision"
NO_ANSWER = "no_answer"


@dataclass(frozen=True)
class EscalationSignal:
    """A reason to hand over, as recorded: a reason code, a detail and a summary for the agent."""

    reason: str
    detail: str | None = None
    summary: str | None = None

    def public(self) -> dict[str, str | None]:
        """What the visitor's client is told."""
        return {"reason": self.reason, "detail": self.detail}


def detect_after(completion: Completion) -> EscalationSignal | None:
    """Signals in the provider's answer: the escalate_to_human tool call, or no matching knowledge."""
    for call in completion.tool_calls:
        if call.name != ESCALATE_TOOL_NAME:
            continue
        try:
            arguments = call.parsed_arguments()
        except ValueError as error:
            # Bad arguments never cancel the handover: the model asked for a human.
            log.warning("escalate_to_human called with invalid arguments (%s); escalating anyway", error)
            return EscalationSignal(MODEL_DECISION, detail="tool call with invalid arguments")
        return EscalationSignal(
            MODEL_DECISION,
            detail=_text(arguments.get("reason")),
            summary=_text(arguments.get("summary")),
        )
    if completion.no_answer:
        return EscalationSignal(NO_ANSWER, detail="no known issue matched the question")
    return None


def _text(value: object) -> str | None:
    return value.strip()[:2000] or None if isinstance(value, str) else None
