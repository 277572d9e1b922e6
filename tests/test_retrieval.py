"""Retrieval: fusion, the size-independent match, the metrics, and the labeled help-center set as a regression."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy
import pydantic
import pytest
import respx
from sqlalchemy import func, select

from bench.retrieval import (
    DATA,
    evaluate,
    false_answers,
    is_tuning,
    load_help_center,
    load_off_topic,
    load_questions,
    rank_of,
    score,
)
from service.api import create_app
from service.config import LOCAL_EMBEDDING_MODEL, Settings
from service.embeddings import LOCAL_MODEL, LocalEmbedder
from service.knowledge import KnowledgeBase, KnownIssue
from service.models import EmbeddingCache
from service.retrieval import MIN_MATCH, RetrievalMode, Retriever, Terms, fuse, opening_text
from service.runtime import Runtime

from .conftest import make_settings
from .factories import send, start_conversation

EMBEDDINGS = "http://embeddings.test/v1"


def issue(title: str, text: str, url: str | None = None) -> KnownIssue:
    return KnownIssue(id=title.lower().replace(" ", "-"), title=title, keywords=(), solution=text,
                      escalate=False, source="test", url=url)


def test_fusion_adds_scaled_bm25_to_the_similarity() -> None:
    similarity = numpy.array([0.50, 0.45, 0.40, 0.10], dtype=numpy.float32)
    assert fuse(similarity, {}) == [0, 1, 2, 3]
    assert fuse(similarity, {1: 8.0, 2: 2.0}, weight=0.25) == [1, 0, 2, 3]  # 0.70, 0.50, 0.4625, 0.10
    assert fuse(similarity, {2: 0.5, 3: 0.1}, weight=0.25) == [2, 0, 1, 3], "BM25 counts relative to its best hit"


def test_metrics_count_ranks_and_right_answers() -> None:
    m = score([1, 2, None, 9], [True, True, False, False])
    assert (m.recall_at_1, m.recall_at_8, round(m.mrr, 4)) == (0.25, 0.5, round((1 + 0.5 + 1 / 9) / 4, 4))
    assert (m.answered_right, m.answered_wrong) == (0.25, 0.25)


def test_rank_ignores_the_section_fragment() -> None:
    hits = [issue("A", "x", "/a.html"), issue("B", "y", "/b.html#fees")]
    assert rank_of(hits, "/b.html") == 2 and rank_of(hits, "/c.html") is None


async def test_match_does_not_depend_on_the_size_of_the_knowledge() -> None:
    payout = issue("Payout delays", "Card payments are paid out two working days later.")
    small = KnowledgeBase((payout, issue("Reset password", "Use the forgot password link.")))
    filler = tuple(issue(f"Topic {n}", f"Unrelated text number {n} about payouts") for n in range(200))
    large = KnowledgeBase((payout, *filler))
    retriever = Retriever(RetrievalMode.BM25)
    [(top_small, match_small)] = (await retriever.search(small, "when are card payments paid out", 1))
    [(top_large, match_large)] = (await retriever.search(large, "when are card payments paid out", 1))
    assert top_small is top_large is payout and match_small == match_large


@pytest.fixture(scope="module")
def help_center() -> KnowledgeBase:
    return load_help_center(DATA / "helpcenter")


# Floors measured on the labeled set (README table, `python -m bench.retrieval`), the help center loaded by
# the real importer (33 articles, 39 entries; its index and category pages skipped as lists of links); a
# change that makes retrieval worse fails here. Hybrid recall@8 holds the issue's target (95 %); its other
# target (80 % answered right offline) is NOT reached yet (recall@1 is 75.0 %, answered right 64.2 %).
@pytest.mark.parametrize(("mode", "recall_at_1", "recall_at_8", "answered_right", "answered_wrong", "off_topic"), [
    (RetrievalMode.BM25, 0.64, 0.89, 0.57, 0.25, 0.15),
    (RetrievalMode.HYBRID, 0.75, 0.95, 0.64, 0.17, 0.04),
])
async def test_labeled_questions_meet_the_measured_floors(
    help_center: KnowledgeBase, mode: RetrievalMode, recall_at_1: float, recall_at_8: float,
    answered_right: float, answered_wrong: float, off_topic: float,
) -> None:
    questions = load_questions(DATA / "helpcenter_questions.jsonl")
    unanswerable = load_off_topic(DATA / "helpcenter_offtopic.jsonl")
    assert len(questions) >= 100 and len(unanswerable) >= 20
    embedder = LocalEmbedder() if mode is RetrievalMode.HYBRID else None
    retriever = Retriever(mode, embedder)
    m = await evaluate(retriever, help_center, questions, min_match=MIN_MATCH)
    assert m.recall_at_1 >= recall_at_1 and m.recall_at_8 >= recall_at_8
    assert m.answered_right >= answered_right and m.answered_wrong <= answered_wrong
    assert await false_answers(retriever, help_center, unanswerable, MIN_MATCH) <= off_topic


async def test_the_held_out_half_is_not_worse_than_before_tuning(help_center: KnowledgeBase) -> None:
    held_out = [q for q in load_questions(DATA / "helpcenter_questions.jsonl") if not is_tuning(q.text)]
    assert 50 <= len(held_out) <= 70, "the split is by a hash of the text: about half"
    m = await evaluate(Retriever(RetrievalMode.HYBRID, LocalEmbedder()), help_center, held_out, MIN_MATCH)
    # Before the typo step, the openings and the weighted match: 69.8 % recall@1, 61.9 % answered right (articles
    # read by the bench's own extraction); through the real importer now 73.0 %, 96.8 % recall@8, 63.5 % right.
    assert m.recall_at_1 >= 0.73 and m.recall_at_8 >= 0.96 and m.answered_right >= 0.63


async def test_off_topic_questions_are_not_answered_in_hybrid_mode(help_center: KnowledgeBase) -> None:
    retriever = Retriever(RetrievalMode.HYBRID, LocalEmbedder())
    for question in ["what's the weather in paris tomorrow", "can you write me a poem about cats",
                     "my washing machine is leaking water", "how do i cook pasta", "do you integrate with shopify"]:
        hits = await retriever.search(help_center, question, 1)
        assert hits[0][1] < MIN_MATCH, question


def test_typos_are_corrected_to_the_knowledges_words_only() -> None:
    terms = Terms.of(KnowledgeBase((issue("Cancel your account", "Cancel the plan under Settings, Billing."),)))
    assert terms.corrected("cancle my acount plan") == "cancel my account plan"
    assert terms.corrected("Cancle it") == "cancel it"
    # An English word is never "corrected", nor a word the knowledge has, nor one with no knowledge word near.
    assert terms.corrected("candle billing xqzvbnmlkjhg") == "candle billing xqzvbnmlkjhg"
    assert terms.corrected("i can't") == "i can't"
    # One edit: a letter added, left out, changed, or two neighbours swapped; two edits are not one.
    assert [terms.nearest(w) for w in ("settingss", "setings", "setyings", "setitngs")] == ["settings"] * 4
    assert terms.nearest("amex") is None and terms.nearest("sgnittes") is None


def test_the_match_weighs_rare_words_above_common_ones() -> None:
    entries = [issue("Refund a card payment", "Refund the payment from the payment's page."),
               issue("Card fees", "Each card payment costs a fee."), issue("Cards", "Add a card.")]
    terms = Terms.of(KnowledgeBase(tuple(entries)))
    # "refund" is in one entry, "card" in all three: sharing the rare word matches more than sharing the common one.
    assert terms.coverage("refund card", 0) == 1.0
    assert terms.coverage("refund card", 1) < 0.5 < terms.coverage("refund my old card", 0)
    assert terms.coverage("how do i", 0) == 0.0, "question words say nothing of the topic"


def test_an_opening_is_the_titles_and_the_text_before_the_first_subheading() -> None:
    section = KnownIssue(id="x", title="Payouts: Why a payout is held", keywords=(), solution="Lead.\n\n## Sub\nMore.",
                         escalate=False, source="test", page_title="Payouts")
    assert opening_text(section) == "Payouts: Payouts: Why a payout is held\nLead."
    assert opening_text(issue("Plain", "All of it.")) == "Plain\nAll of it."


def test_the_default_threshold_and_model_are_the_measured_ones() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.offline_min_score == MIN_MATCH and settings.retrieval == "hybrid"
    assert settings.embedding_model == LOCAL_EMBEDDING_MODEL == LOCAL_MODEL and settings.local_embeddings


def test_a_hosted_embedding_model_needs_a_key_or_an_endpoint(tmp_path: Path, sqlite_url: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="SUPPORTBOT_EMBEDDING_API_KEY"):
        make_settings(tmp_path, sqlite_url, embedding_model="text-embedding-3-small")
    assert make_settings(tmp_path, sqlite_url, embedding_model="text-embedding-3-small", retrieval="bm25")


def word_vector(text: str) -> list[float]:
    """A deterministic stand-in for a hosted model: a bag of hashed words, so shared words mean similar vectors."""
    vector = [0.0] * 64
    for word in text.lower().split():
        vector[hashlib.sha256(word.strip("?.,!*:").encode()).digest()[0] % 64] += 1.0
    return vector


def embeddings_answer(request: httpx.Request) -> httpx.Response:
    texts = json.loads(request.content)["input"]
    return httpx.Response(200, json={
        "object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 1, "total_tokens": 1},
        "data": [{"object": "embedding", "index": i, "embedding": word_vector(t)} for i, t in enumerate(texts)],
    })


async def ask(runtime: Runtime, question: str) -> dict[str, object]:
    """One question through the API; the reply as the visitor gets it."""
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        conversation_id, auth = await start_conversation(client)
        reply: dict[str, object] = (await send(client, conversation_id, auth, question)).json()["reply"]
    return reply


@pytest.fixture
def embeddings_mock() -> AsyncIterator[respx.MockRouter]:
    with respx.mock(base_url=EMBEDDINGS) as router:
        yield router


async def test_hosted_embeddings_embed_the_knowledge_once_per_database(
    tmp_path: Path, database_url: str, embeddings_mock: respx.MockRouter
) -> None:
    route = embeddings_mock.post("/embeddings").mock(side_effect=embeddings_answer)
    settings = make_settings(tmp_path, database_url, embedding_model="text-embedding-3-small",
                             openai_base_url=EMBEDDINGS, openai_api_key=None, embedding_api_key="sk-embed")
    first = Runtime.build(settings)
    reply = await ask(first, "Charts show yesterday's data, not today's")
    entries = len(first.knowledge.current().issues)
    sent = [json.loads(call.request.content) for call in route.calls]
    assert str(reply["content"]).startswith("**Charts show yesterday")
    assert [len(body["input"]) for body in sent] == [entries, 1]
    assert sent[1]["input"] == ["Charts show yesterday's data, not today's"]
    assert {body["model"] for body in sent} == {"text-embedding-3-small"}
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-embed"
    with first.log.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EmbeddingCache)) == entries
    await first.aclose()

    second = Runtime.build(settings)  # another replica, or a restart: the entries come from the table
    await ask(second, "How can I invite a teammate?")
    assert [len(json.loads(call.request.content)["input"]) for call in route.calls[2:]] == [1]
    await second.aclose()


async def test_a_failing_embedding_endpoint_leaves_the_answer_to_bm25(
    tmp_path: Path, sqlite_url: str, embeddings_mock: respx.MockRouter
) -> None:
    route = embeddings_mock.post("/embeddings").mock(return_value=httpx.Response(503))
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, embedding_model="text-embedding-3-small",
                                          embedding_base_url=EMBEDDINGS, openai_max_retries=0))
    reply = await ask(runtime, "Charts show yesterday's data, not today's")
    assert route.called and str(reply["content"]).startswith("**Charts show yesterday")
    await runtime.aclose()


@pytest.mark.parametrize(("retrieval", "question", "answered"), [
    ("hybrid", "can't get into my account, forgot the passcode", True),
    ("bm25", "can't get into my account, forgot the passcode", True),  # "forgot" and "account" are rare words
    ("hybrid", "cant log in, forgot my pasword", True),  # the typo is read as the knowledge's word
])
async def test_the_offline_provider_answers_a_paraphrase_from_the_right_entry(
    tmp_path: Path, sqlite_url: str, retrieval: str, question: str, answered: bool
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, retrieval=retrieval))
    reply = await ask(runtime, question)
    assert str(reply["content"]).startswith("**Reset your password") is answered
    await runtime.aclose()
