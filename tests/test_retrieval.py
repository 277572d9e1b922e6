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

from bench.retrieval import DATA, evaluate, load_help_center, load_questions, rank_of, score
from service.api import create_app
from service.config import LOCAL_EMBEDDING_MODEL, Settings
from service.embeddings import LOCAL_MODEL, LocalEmbedder
from service.knowledge import KnowledgeBase, KnownIssue
from service.models import EmbeddingCache
from service.retrieval import MIN_MATCH, RetrievalMode, Retriever, fuse
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


# Floors measured on the labeled set (README table, `python -m bench.retrieval`); a change that makes
# retrieval worse fails here. Hybrid recall@8 holds the issue's target (95 %); its other target (80 %
# answered right offline) is NOT reached yet.
@pytest.mark.parametrize(("mode", "recall_at_1", "recall_at_8", "answered_right", "answered_wrong"), [
    (RetrievalMode.BM25, 0.62, 0.89, 0.55, 0.30),
    (RetrievalMode.HYBRID, 0.71, 0.95, 0.62, 0.20),
])
async def test_labeled_questions_meet_the_measured_floors(
    help_center: KnowledgeBase, mode: RetrievalMode, recall_at_1: float, recall_at_8: float,
    answered_right: float, answered_wrong: float,
) -> None:
    questions = load_questions(DATA / "helpcenter_questions.jsonl")
    assert len(questions) >= 100
    embedder = LocalEmbedder() if mode is RetrievalMode.HYBRID else None
    m = await evaluate(Retriever(mode, embedder), help_center, questions, min_match=MIN_MATCH)
    assert m.recall_at_1 >= recall_at_1 and m.recall_at_8 >= recall_at_8
    assert m.answered_right >= answered_right and m.answered_wrong <= answered_wrong


async def test_off_topic_questions_are_not_answered_in_hybrid_mode(help_center: KnowledgeBase) -> None:
    retriever = Retriever(RetrievalMode.HYBRID, LocalEmbedder())
    for question in ["what's the weather in paris tomorrow", "can you write me a poem about cats",
                     "my washing machine is leaking water", "how do i cook pasta"]:
        hits = await retriever.search(help_center, question, 1)
        assert hits[0][1] < MIN_MATCH, question


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


@pytest.mark.parametrize(("retrieval", "answered"), [("hybrid", True), ("bm25", False)])
async def test_the_offline_provider_answers_a_paraphrase_by_meaning(
    tmp_path: Path, sqlite_url: str, retrieval: str, answered: bool
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, retrieval=retrieval))
    reply = await ask(runtime, "can't get into my account, forgot the passcode")
    assert str(reply["content"]).startswith("**Reset your password") is answered
    await runtime.aclose()
