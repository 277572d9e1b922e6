"""Retrieval: BM25 alone or fused with embeddings (reciprocal rank fusion), with a size-independent match score."""

from __future__ import annotations

import asyncio
from enum import StrEnum

import numpy

from .embeddings import Embedder
from .embeddings._base import Vectors
from .knowledge import KnowledgeBase, KnownIssue, tokenize

RRF_K = 60  # the constant of Cormack et al. (2009): ranks past the first few count for little
CANDIDATES = 50  # hits taken from each ranking before fusing
MIN_MATCH = 0.3  # the offline answer threshold measured on the labeled set (bench/retrieval.py)


class RetrievalMode(StrEnum):
    """How known issues are found for a message."""

    BM25 = "bm25"
    HYBRID = "hybrid"


def embedding_text(issue: KnownIssue) -> str:
    """What is embedded for an entry: its page's title, its own title and its text."""
    head = f"{issue.page_title}: {issue.title}" if issue.page_title and issue.page_title != issue.title else issue.title
    return f"{head}\n{issue.solution}"


def term_coverage(query: str, issue: KnownIssue) -> float:
    """Share of the query's content words (stemmed, no stop words) that the entry contains: 0 to 1."""
    terms = set(tokenize([query])[0])
    if not terms:
        return 0.0
    return len(terms & set(tokenize([issue.search_text])[0])) / len(terms)


def fuse(rankings: list[list[int]], k: int = RRF_K) -> list[int]:
    """Reciprocal rank fusion of several rankings of document numbers, best first."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank + 1)
    return sorted(scores, key=lambda doc: (-scores[doc], doc))


class Retriever:
    """Finds the known issues for a message; scores are matches from 0 to 1 that do not depend on the base's size.

    In `bm25` mode the match is the share of the message's content words the entry contains; in `hybrid` mode
    it is the higher of that and the cosine similarity of the message's and the entry's embeddings.
    """

    def __init__(self, mode: RetrievalMode, embedder: Embedder | None = None) -> None:
        if mode is RetrievalMode.HYBRID and embedder is None:
            raise ValueError("hybrid retrieval needs an embedder")
        self.mode = mode
        self._embedder = embedder
        self._vectors: tuple[str, Vectors] | None = None  # (knowledge revision, unit-length rows)
        self._lock = asyncio.Lock()

    async def index(self, knowledge: KnowledgeBase) -> Vectors:
        """The entries' unit vectors, embedded (through the cache) when the knowledge changed."""
        assert self._embedder is not None
        cached = self._vectors
        if cached and cached[0] == knowledge.revision:
            return cached[1]
        async with self._lock:
            if self._vectors and self._vectors[0] == knowledge.revision:
                return self._vectors[1]
            vectors = _unit(await self._embedder.embed([embedding_text(i) for i in knowledge.issues]))
            self._vectors = (knowledge.revision, vectors)
            return vectors

    async def search(self, knowledge: KnowledgeBase, query: str, k: int) -> list[tuple[KnownIssue, float]]:
        """The best `k` entries for `query`, best first, each with its match (0 to 1)."""
        if not knowledge.issues:
            return []
        lexical = knowledge.search(query, CANDIDATES)
        if self.mode is RetrievalMode.BM25:
            return [(issue, term_coverage(query, issue)) for issue, _ in lexical[:k]]
        assert self._embedder is not None
        vectors = await self.index(knowledge)
        similarity = vectors @ _unit(await self._embedder.embed([query]))[0]
        position = {id(issue): n for n, issue in enumerate(knowledge.issues)}
        dense = [int(n) for n in numpy.argsort(-similarity, kind="stable")[:CANDIDATES]]
        best = fuse([[position[id(issue)] for issue, _ in lexical], dense])[:k]
        return [(knowledge.issues[n], max(term_coverage(query, knowledge.issues[n]), float(similarity[n])))
                for n in best]


def _unit(vectors: Vectors) -> Vectors:
    norms = numpy.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / numpy.where(norms == 0, 1.0, norms)).astype(numpy.float32, copy=False)
