"""Grading a reply against a reference answer: a model grader with a written rubric, or lexical overlap."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass

from .errors import ModelUnavailable
from .knowledge import tokenize
from .providers.base import ChatRequest, Provider

log = logging.getLogger(__name__)

LEXICAL_PASS = 0.35
RUBRIC = """You grade a customer-support chatbot's reply against a reference answer written by a human agent.

Rubric:
- 1.0: the reply gives the same facts and steps as the reference (wording may differ) and nothing wrong.
- 0.7: the key fact or step is there, a minor detail is missing.
- 0.4: partly right, but an important step or fact is missing or unclear.
- 0.0: wrong, contradicts the reference, invents facts, or does not answer.
A reply passes at 0.7 or more. Brevity is fine. Handing over to a human when the reference answers the
question is a fail.

Answer with one JSON object only: {"score": <0..1>, "reason": "<one sentence>"}"""


@dataclass(frozen=True)
class Grade:
    method: str
    score: float
    passed: bool
    reason: str


def lexical_grade(reference: str, reply: str, threshold: float = LEXICAL_PASS) -> Grade:
    """F1 of the content words (stemmed, stop words removed) shared by reply and reference."""
    wanted, got = tokenize([reference, reply])
    ref_counts, reply_counts = Counter(wanted), Counter(got)
    overlap = sum((ref_counts & reply_counts).values())
    if not overlap:
        return Grade("lexical", 0.0, False, "no content words in common with the reference")
    precision, recall = overlap / sum(reply_counts.values()), overlap / sum(ref_counts.values())
    score = round(2 * precision * recall / (precision + recall), 3)
    shared = ", ".join(sorted((ref_counts & reply_counts).keys())[:8])
    verdict = ">=" if score >= threshold else "<"
    return Grade("lexical", score, score >= threshold, f"word-overlap F1 {score} {verdict} {threshold} ({shared})")


async def model_grade(provider: Provider, model: str, question: str, reference: str, reply: str) -> Grade:
    """Ask the hosted model to grade with the rubric; raises ValueError when its answer is not usable."""
    request = ChatRequest(
        model=model, max_tokens=200, temperature=0.0, tools=[],
        messages=[{"role": "system", "content": RUBRIC},
                  {"role": "user", "content": json.dumps({"question": question, "reference": reference,
                                                          "reply": reply})}],
    )
    completion = await provider.complete(request)
    text = completion.text.strip().removeprefix("```json").removesuffix("```").strip()
    data = json.loads(text)
    score = float(data["score"])
    if not 0 <= score <= 1:
        raise ValueError(f"score {score} outside 0..1")
    return Grade("model", score, score >= 0.7, str(data.get("reason", "")))


async def grade_reference(question: str, reference: str, reply: str, provider: Provider | None,
                          model: str) -> Grade:
    """The model grader when a hosted model is configured, else (or when it fails) the lexical one."""
    if provider is not None:
        try:
            return await model_grade(provider, model, question, reference, reply)
        except (ModelUnavailable, ValueError, KeyError, TypeError) as error:
            log.warning("model grader failed (%s); grading lexically", error)
            fallback = lexical_grade(reference, reply)
            return Grade(fallback.method, fallback.score, fallback.passed,
                         f"{fallback.reason}; model grader failed: {error}")
    return lexical_grade(reference, reply)
