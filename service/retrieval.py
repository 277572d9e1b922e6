"""Retrieval: BM25 alone or fused with embeddings (weighted score fusion), with a size-independent match."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from enum import StrEnum

import httpx
import numpy
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .embeddings import CachedEmbedder, Embedder, EmbeddingError, LocalEmbedder, OpenAIEmbedder
from .embeddings._base import Vectors
from .knowledge import KnowledgeBase, KnownIssue, tokenize

log = logging.getLogger(__name__)

# Weight of BM25 (scaled to 0-1 by the query's best hit) beside the cosine similarity. Measured on the labeled
# set: recall@1 is flat from 0.2 to 0.3 and both beat reciprocal rank fusion (bench/retrieval.py).
LEXICAL_WEIGHT = 0.25
CANDIDATES = 50  # BM25 hits scored per query
MIN_MATCH = 0.35  # the offline answer threshold measured on the labeled set (bench/retrieval.py)
QUERY_VECTORS_KEPT = 256  # a turn and the offline provider embed the same message: the second time is free

Hits = list[tuple[KnownIssue, float]]
Search = Callable[[str, int], Awaitable[Hits]]


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


def fuse(similarity: Vectors, lexical: dict[int, float], weight: float = LEXICAL_WEIGHT) -> list[int]:
    """Entry numbers best first by cosine similarity plus `weight` times BM25 scaled by its best score."""
    scores = similarity.astype(numpy.float64)
    top = max(lexical.values(), default=0.0)
    for doc, bm25 in lexical.items():
        scores[doc] += weight * bm25 / top
    return [int(n) for n in numpy.argsort(-scores, kind="stable")]


class Retriever:
    """Finds the known issues for a message; scores are matches from 0 to 1 that do not depend on the base's size.

    In `bm25` mode the match is the share of the message's content words the entry contains; in `hybrid` mode
    it is the mean of that and the cosine similarity of the message's and the entry's embeddings, so a
    message must share meaning and words with an entry to be answered from it. The
    entries are embedded by `documents` (a cache, for a hosted model), a message by `embedder`; when the
    embedder fails, the message is answered by BM25 alone.
    """

    def __init__(self, mode: RetrievalMode, embedder: Embedder | None = None,
                 documents: Embedder | None = None) -> None:
        if mode is RetrievalMode.HYBRID and embedder is None:
            raise ValueError("hybrid retrieval needs an embedder")
        self.mode = mode
        self._embedder = embedder
        self._documents = documents or embedder
        self._vectors: tuple[str, Vectors] | None = None  # (knowledge revision, unit-length rows)
        self._queries: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = asyncio.Lock()

    async def index(self, knowledge: KnowledgeBase) -> Vectors:
        """The entries' unit vectors, embedded (through the cache) when the knowledge changed."""
        assert self._documents is not None
        cached = self._vectors
        if cached and cached[0] == knowledge.revision:
            return cached[1]
        async with self._lock:
            if self._vectors and self._vectors[0] == knowledge.revision:
                return self._vectors[1]
            vectors = _unit(await self._documents.embed([embedding_text(i) for i in knowledge.issues]))
            self._vectors = (knowledge.revision, vectors)
            return vectors

    async def query_vector(self, query: str) -> Vectors:
        """The message's unit vector (the last few are kept)."""
        assert self._embedder is not None
        vector = self._queries.get(query)
        if vector is None:
            vector = _unit(await self._embedder.embed([query]))[0]
            self._queries[query] = vector
            while len(self._queries) > QUERY_VECTORS_KEPT:
                self._queries.popitem(last=False)
        return vector

    async def search(self, knowledge: KnowledgeBase, query: str, k: int) -> Hits:
        """The best `k` entries for `query`, best first, each with its match (0 to 1)."""
        if not knowledge.issues:
            return []
        lexical = knowledge.search(query, CANDIDATES)
        if self.mode is RetrievalMode.BM25:
            return _lexical(query, lexical, k)
        try:
            vectors = await self.index(knowledge)
            similarity = vectors @ await self.query_vector(query)
        except EmbeddingError as error:
            log.warning("embeddings unavailable, retrieving by BM25 alone: %s", error)
            return _lexical(query, lexical, k)
        position = {id(issue): n for n, issue in enumerate(knowledge.issues)}
        best = fuse(similarity, {position[id(issue)]: bm25 for issue, bm25 in lexical})[:k]
        return [(knowledge.issues[n], (term_coverage(query, knowledge.issues[n]) + max(float(similarity[n]), 0.0)) / 2)
                for n in best]


def searcher(retriever: Retriever, knowledge: Callable[[], KnowledgeBase]) -> Search:
    """A search of the knowledge as it is at each call."""
    async def search(query: str, k: int) -> Hits:
        return await retriever.search(knowledge(), query, k)
    return search


def retriever_for(settings: Settings, sessions: sessionmaker[Session],
                  http_client: httpx.AsyncClient | None = None) -> Retriever:
    """The retriever the settings ask for: BM25, or hybrid with the packaged model or a hosted endpoint."""
    mode = RetrievalMode(settings.retrieval)
    if mode is RetrievalMode.BM25:
        return Retriever(mode)
    if settings.local_embeddings:
        # Embedding the whole knowledge takes a fraction of a second locally: no cache table needed.
        return Retriever(mode, LocalEmbedder())
    hosted = OpenAIEmbedder(
        settings.embedding_model, api_key=settings.embedding_api_key or settings.openai_api_key or "unused",
        base_url=settings.embedding_base_url or settings.openai_base_url, timeout=settings.openai_timeout,
        max_retries=settings.openai_max_retries, http_client=http_client,
    )
    return Retriever(mode, hosted, documents=CachedEmbedder(hosted, sessions))


def _lexical(query: str, lexical: Hits, k: int) -> Hits:
    return [(issue, term_coverage(query, issue)) for issue, _ in lexical[:k]]


def _unit(vectors: Vectors) -> Vectors:
    norms = numpy.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / numpy.where(norms == 0, 1.0, norms)).astype(numpy.float32, copy=False)
