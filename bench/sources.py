"""How well replies cite their sources on the labeled question set: the right article cited, and what else is.

    python -m bench.sources [--help-center DIR] [--questions FILE] [--min-match 0.3 0.4 0.5]

For each question, the sources a hosted model's reply would cite (service/sources.py: the three best hits at
or above the threshold, one per page) and the one an offline answer cites (the top hit, when it passes).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from service.embeddings import LocalEmbedder
from service.knowledge import KnowledgeBase
from service.retrieval import MIN_MATCH, RetrievalMode, Retriever
from service.sources import MAX_SOURCES, Source, relevant_in_prompt

from .retrieval import DATA, Question, load_help_center, load_questions

PROMPT_TOP_K = 8  # settings.knowledge_top_k: what a hosted model's prompt holds of a large knowledge base


@dataclass(frozen=True)
class Citing:
    """Citation quality over a question set."""

    right_cited: float  # the labeled article is among the hosted reply's sources
    only_right: float  # ... and nothing else is
    none_cited: float  # no source passed the threshold
    mean_sources: float
    offline_right: float  # the offline answer cites the labeled article
    offline_wrong: float  # the offline answer cites another article


def _page(source: Source) -> str:
    return (source.url or "").split("#")[0]


async def measure(retriever: Retriever, knowledge: KnowledgeBase, questions: Sequence[Question],
                  min_match: float) -> Citing:
    """Cite for every question as a turn would."""
    right = only = none = total = offline_right = offline_wrong = 0
    for question in questions:
        hits = await retriever.search(knowledge, question.text, k=PROMPT_TOP_K)
        sources = relevant_in_prompt(hits, [issue.id for issue, _ in hits], min_match)
        pages = [_page(source) for source in sources]
        right += question.url in pages
        only += pages == [question.url]
        none += not pages
        total += len(pages)
        if hits and hits[0][1] >= min_match:
            top = (hits[0][0].url or "").split("#")[0]
            offline_right += top == question.url
            offline_wrong += top != question.url
    n = len(questions) or 1
    return Citing(right / n, only / n, none / n, total / n, offline_right / n, offline_wrong / n)


async def main(argv: Sequence[str] | None = None) -> None:
    """Print one row per retrieval mode and threshold."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--help-center", default=DATA / "helpcenter")
    parser.add_argument("--questions", default=DATA / "helpcenter_questions.jsonl")
    parser.add_argument("--min-match", type=float, nargs="+", default=[MIN_MATCH])
    args = parser.parse_args(argv)
    knowledge = load_help_center(args.help_center)
    questions = load_questions(args.questions)
    print(f"{len(questions)} questions, {len(knowledge.issues)} entries, at most {MAX_SOURCES} sources a reply")
    print("| mode | threshold | right article cited | only the right one | none cited | sources per reply "
          "| offline cites right | offline cites wrong |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in (RetrievalMode.BM25, RetrievalMode.HYBRID):
        retriever = Retriever(mode, LocalEmbedder() if mode is RetrievalMode.HYBRID else None)
        for min_match in args.min_match:
            c = await measure(retriever, knowledge, questions, min_match)
            print(f"| {mode} | {min_match} | {c.right_cited:.1%} | {c.only_right:.1%} | {c.none_cited:.1%} | "
                  f"{c.mean_sources:.2f} | {c.offline_right:.1%} | {c.offline_wrong:.1%} |")


if __name__ == "__main__":
    asyncio.run(main())
