"""Retrieval quality on a labeled question set: recall@1, recall@8 and MRR per mode, and the offline answer rate.

The questions are split in two halves by a hash of their text: choices were tuned on the `tuning` half only, and
the `held-out` half tells whether they carry over. Off-topic and out-of-scope questions (which the knowledge
does not answer) give the rate of false answers. The last column is the mean search time per question.
The help center is loaded by the real importer (service/imports: sitemap, robots.txt, extraction, link-list
pages skipped, long pages split), so the figures are those of an import.

    python -m bench.retrieval [--help-center DIR] [--questions FILE] [--off-topic FILE] [--min-match 0.35]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from service.embeddings import LocalEmbedder
from service.imports.crawling import crawl
from service.imports.documents import Document
from service.imports.fetching import Fetcher, FetchLimits
from service.imports.storing import entry_rows
from service.knowledge import KnowledgeBase, KnownIssue, slugify
from service.retrieval import MIN_MATCH, RetrievalMode, Retriever

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
PUBLISHED_ORIGIN = "https://help.tallybook.example"  # what the help center's sitemap.xml and robots.txt name


@dataclass(frozen=True)
class Question:
    """A customer's question and the path of the article that answers it."""

    text: str
    url: str


@dataclass(frozen=True)
class Metrics:
    """Ranking quality over a question set; `answered_right` is the offline provider's rate."""

    recall_at_1: float
    recall_at_8: float
    mrr: float
    answered_right: float
    answered_wrong: float


def is_tuning(question: str) -> bool:
    """True for the half of the questions that choices were tuned on (by a hash of the text: stable, unbiased)."""
    return hashlib.sha256(question.encode("utf-8")).digest()[0] % 2 == 0


def load_questions(path: Path) -> list[Question]:
    """The labeled questions of a JSON-lines file ({"question", "url"})."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Question(row["question"], row["url"]) for row in rows]


def load_off_topic(path: Path) -> list[str]:
    """Questions the knowledge does not answer, from a JSON-lines file ({"question", "kind"})."""
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_help_center(root: Path) -> KnowledgeBase:
    """The help center under `root` as a real import makes it: served at its published origin (its sitemap and
    robots.txt name it), crawled, extracted, link-list pages skipped and long pages split by service/imports.

    Entry URLs are paths (`/articles/x.html#section`), as the labeled questions name them.
    """
    listing = crawl(Fetcher(f"{PUBLISHED_ORIGIN}/", FetchLimits(delay=0.0), client=_serve_folder(root),
                            resolve=lambda host: ["127.0.0.1"]), {})
    issues: list[KnownIssue] = []
    for document in (item for item in listing.items if isinstance(item, Document)):
        for row in entry_rows(document):
            url = urlsplit(row.url)._replace(scheme="", netloc="").geturl()
            issues.append(KnownIssue(id=f"imported-{slugify(url)}-{row.position}", title=row.title, keywords=(),
                                     solution=row.text, escalate=False, source=PUBLISHED_ORIGIN, url=url,
                                     page_title=document.title))
    return KnowledgeBase(tuple(issues))


def _serve_folder(root: Path) -> httpx.Client:
    """An HTTP client whose every request is answered from the files under `root` (404 for any other path)."""
    types = {".html": "text/html; charset=utf-8", ".xml": "application/xml", ".txt": "text/plain"}

    def answer(request: httpx.Request) -> httpx.Response:
        file = (root / request.url.path.lstrip("/")).resolve()
        if not file.is_file() or not file.is_relative_to(root.resolve()):
            return httpx.Response(404, text="not found")
        return httpx.Response(200, content=file.read_bytes(), headers={
            "content-type": types.get(file.suffix, "application/octet-stream")})

    return httpx.Client(transport=httpx.MockTransport(answer), follow_redirects=False)


def rank_of(hits: Sequence[KnownIssue], url: str) -> int | None:
    """1-based rank of the first entry from the page at `url` (fragment ignored), or None."""
    return next((n for n, issue in enumerate(hits, 1) if (issue.url or "").split("#")[0] == url), None)


def score(ranks: Sequence[int | None], answered: Sequence[bool]) -> Metrics:
    """Metrics from each question's rank of its right article and whether the top hit passed the threshold."""
    n = len(ranks) or 1
    right = sum(1 for rank, ok in zip(ranks, answered, strict=True) if ok and rank == 1)
    return Metrics(
        recall_at_1=sum(1 for r in ranks if r == 1) / n,
        recall_at_8=sum(1 for r in ranks if r is not None and r <= 8) / n,
        mrr=sum(1 / r for r in ranks if r is not None) / n,
        answered_right=right / n,
        answered_wrong=(sum(answered) - right) / n,
    )


async def evaluate(retriever: Retriever, knowledge: KnowledgeBase, questions: Sequence[Question],
                   min_match: float) -> Metrics:
    """Run every question through `retriever`."""
    ranks: list[int | None] = []
    answered: list[bool] = []
    for question in questions:
        hits = await retriever.search(knowledge, question.text, k=8)
        ranks.append(rank_of([issue for issue, _ in hits], question.url))
        answered.append(bool(hits) and hits[0][1] >= min_match)
    return score(ranks, answered)


async def false_answers(retriever: Retriever, knowledge: KnowledgeBase, questions: Sequence[str],
                        min_match: float) -> float:
    """Share of `questions` (which the knowledge does not answer) that the offline provider would answer."""
    answered = 0
    for question in questions:
        hits = await retriever.search(knowledge, question, k=1)
        answered += bool(hits) and hits[0][1] >= min_match
    return answered / (len(questions) or 1)


async def main(argv: Sequence[str] | None = None) -> None:
    """Print the table for BM25 and hybrid (local embeddings): each half of the questions, the whole, off-topic."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--help-center", type=Path, default=DATA / "helpcenter")
    parser.add_argument("--questions", type=Path, default=DATA / "helpcenter_questions.jsonl")
    parser.add_argument("--off-topic", type=Path, default=DATA / "helpcenter_offtopic.jsonl")
    parser.add_argument("--min-match", type=float, default=MIN_MATCH, help="the offline answer threshold")
    args = parser.parse_args(argv)
    min_match = args.min_match
    knowledge = load_help_center(args.help_center)
    questions = load_questions(args.questions)
    off_topic = load_off_topic(args.off_topic)
    halves = [("tuning", [q for q in questions if is_tuning(q.text)]),
              ("held-out", [q for q in questions if not is_tuning(q.text)]), ("all", questions)]
    print(f"{len(questions)} questions ({len(halves[0][1])} tuning, {len(halves[1][1])} held-out), "
          f"{len(off_topic)} off-topic, {len(knowledge.issues)} entries, offline threshold {min_match}")
    print("| mode | questions | recall@1 | recall@8 | MRR | offline answered right | answered wrong |")
    print("|---|---|---|---|---|---|---|")
    modes = [(RetrievalMode.BM25, None), (RetrievalMode.HYBRID, LocalEmbedder())]
    for mode, embedder in modes:
        retriever = Retriever(mode, embedder)
        await retriever.search(knowledge, "warm up", 8)  # loads the model, embeds the knowledge
        for name, subset in halves:
            m = await evaluate(retriever, knowledge, subset, min_match)
            print(f"| {mode} | {name} | {m.recall_at_1:.1%} | {m.recall_at_8:.1%} | {m.mrr:.3f} | "
                  f"{m.answered_right:.1%} | {m.answered_wrong:.1%} |")
        wrong = await false_answers(retriever, knowledge, off_topic, min_match)
        print(f"| {mode} | off-topic: answered (should be 0) | | | | | {wrong:.1%} |")
        retriever = Retriever(mode, embedder)
        await retriever.search(knowledge, "warm up", 8)
        started = time.perf_counter()
        for question in questions:
            await retriever.search(knowledge, question.text, k=8)
        print(f"| {mode} | search time per question | {(time.perf_counter() - started) / len(questions) * 1000:.2f} ms "
              "| | | | |")


if __name__ == "__main__":
    asyncio.run(main())
