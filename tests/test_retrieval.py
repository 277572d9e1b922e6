"""Retrieval: fusion, the size-independent match, the metrics, and the labeled help-center set as a regression."""

from __future__ import annotations

import pytest

from bench.retrieval import DATA, evaluate, load_help_center, load_questions, rank_of, score
from service.embeddings import LocalEmbedder
from service.knowledge import KnowledgeBase, KnownIssue
from service.retrieval import RetrievalMode, Retriever, fuse


def issue(title: str, text: str, url: str | None = None) -> KnownIssue:
    return KnownIssue(id=title.lower().replace(" ", "-"), title=title, keywords=(), solution=text,
                      escalate=False, source="test", url=url)


def test_fusion_prefers_documents_ranked_well_by_both() -> None:
    assert fuse([[1, 2, 3, 4], [4, 2, 5, 1]]) == [2, 1, 4, 3, 5]
    assert fuse([[5, 6], [6, 7]])[0] == 6


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


# Floors measured on the labeled set (README table); a change that makes retrieval worse fails here.
# The issue's targets (80 % answered right offline, 95 % hybrid recall@8) are NOT reached yet.
@pytest.mark.parametrize(("mode", "recall_at_1", "recall_at_8", "answered_right", "answered_wrong"), [
    (RetrievalMode.BM25, 0.62, 0.88, 0.59, 0.36),
    (RetrievalMode.HYBRID, 0.65, 0.93, 0.63, 0.32),
])
async def test_labeled_questions_meet_the_measured_floors(
    help_center: KnowledgeBase, mode: RetrievalMode, recall_at_1: float, recall_at_8: float,
    answered_right: float, answered_wrong: float,
) -> None:
    questions = load_questions(DATA / "helpcenter_questions.jsonl")
    assert len(questions) >= 100
    embedder = LocalEmbedder() if mode is RetrievalMode.HYBRID else None
    m = await evaluate(Retriever(mode, embedder), help_center, questions, min_match=0.3)
    assert m.recall_at_1 >= recall_at_1 and m.recall_at_8 >= recall_at_8
    assert m.answered_right >= answered_right and m.answered_wrong <= answered_wrong


async def test_off_topic_questions_are_not_answered_in_hybrid_mode(help_center: KnowledgeBase) -> None:
    retriever = Retriever(RetrievalMode.HYBRID, LocalEmbedder())
    for question in ["what's the weather in paris tomorrow", "can you write me a poem about cats",
                     "my washing machine is leaking water", "how do i cook pasta"]:
        hits = await retriever.search(help_center, question, 1)
        assert hits[0][1] < 0.3, question
