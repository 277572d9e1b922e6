"""The offline provider: answers from the knowledge base alone, with no model and no network."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

from ..fixed_texts import BUILT_IN
from ..prompts import estimate_tokens
from ..retrieval import Search
from .base import ChatRequest, Completion, TextDelta

_GREETING = re.compile(r"^\s*(hi|hello|hey|hallo|good (morning|afternoon|evening)|howdy)\b[\s!.,]*\w*[\s!.]*$", re.I)
_THANKS = re.compile(r"\b(thanks|thank you|thx|cheers|that (worked|fixed it|helped)|works now|all good)\b", re.I)


def _english_text(key: str, _language: str | None) -> str:
    return BUILT_IN[key]


CROSS_LANGUAGE_MIN_SCORE = 0.4  # the match a question in another language than the knowledge's needs


class OfflineProvider:
    """Answers from the knowledge base alone: the best-matching known issue, or a handover."""

    name = "offline"
    model = "offline"

    def __init__(self, search: Search, min_score: float, knowledge_language: str = "en",
                 texts: Callable[[str, str | None], str] | None = None) -> None:
        self._search = search
        self._min_score = min_score
        self._knowledge_language = knowledge_language
        self._texts = texts or _english_text

    async def answer(self, request: ChatRequest) -> Completion:
        """The reply for the last user message of `request`, in the visitor's language when it hands over."""
        question = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), "")
        other_language = request.language is not None and request.language != self._knowledge_language
        # Across languages a match must be stronger: the packaged embeddings do not bridge languages, so
        # what matches is shared words ("API 401"), and weak matches were wrong entries (README, languages).
        min_score = max(self._min_score, CROSS_LANGUAGE_MIN_SCORE) if other_language else self._min_score
        text, matched, no_answer = await self._reply_for(str(question), min_score)
        if no_answer:
            text = self._texts("wrong_language" if other_language else "no_answer", request.language)
        prompt_chars = sum(len(str(m.get("content") or "")) for m in request.messages)
        return Completion(
            text=text,
            model_reported=self.model,
            tokens_in=estimate_tokens("x" * prompt_chars),
            tokens_out=estimate_tokens(text),
            finish_reason="stop",
            no_answer=no_answer,
            matched_issue=matched,
            wrong_language=no_answer and other_language,
        )

    async def _reply_for(self, question: str, min_score: float) -> tuple[str, str | None, bool]:
        if _GREETING.match(question):
            return "Hello! What can I help you with today?", None, False
        if _THANKS.search(question) and len(question) < 80:
            return "Glad that helped! Is there anything else I can do for you?", None, False
        hits = await self._search(question, 1)
        if hits and hits[0][1] >= min_score:
            issue = hits[0][0]
            return f"**{issue.title}**\n\n{issue.solution}", issue.id, False
        # A question in another language than the knowledge's is answered only when retrieval matches it
        # (semantic retrieval may, across languages); otherwise the caller says why it hands over.
        return "", None, True

    async def complete(self, request: ChatRequest) -> Completion:
        return await self.answer(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | Completion]:
        completion = await self.answer(request)
        for piece in re.findall(r"(?:\S+\s*){1,3}", completion.text):
            yield TextDelta(piece)
        yield completion
