"""Retrieval: BM25 alone or fused with embeddings (weighted score fusion), with a size-independent match.

Before searching, a word the knowledge does not contain and English does not know is corrected to a
knowledge word one edit away ("invocie" -> "invoice"). An entry's embedding is its whole text's blended with
its opening's (title and the text before its first subheading). The match weighs each of the message's
content words by how rare it is in the knowledge, so "do you integrate with shopify" does not match an entry
for sharing "you" or "with".
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .embeddings import CachedEmbedder, Embedder, EmbeddingError, LocalEmbedder, OpenAIEmbedder
from .embeddings._base import Vectors
from .knowledge import KnowledgeBase, KnownIssue, tokenize
from .spelling import is_english_word

log = logging.getLogger(__name__)

# Weight of BM25 (scaled to 0-1 by the query's best hit) beside the cosine similarity. Measured on the labeled
# set: recall@1 is flat from 0.2 to 0.3 and both beat reciprocal rank fusion (bench/retrieval.py).
LEXICAL_WEIGHT = 0.25
CANDIDATES = 50  # BM25 hits scored per query
MIN_MATCH = 0.35  # the offline answer threshold measured on the labeled set (bench/retrieval.py)
QUERY_VECTORS_KEPT = 256  # a turn and the offline provider embed the same message: the second time is free
# Weight of the entry's opening (title and lead) beside its whole text in its similarity (measured on the tuning
# half of the labeled set, bench/retrieval.py: 0.2 to 0.3 add 3 to 5 points of recall@1).
OPENING_WEIGHT = 0.2
MIN_TYPO_CHARS = 4  # shorter words have too many neighbours to correct
# Words of a question that say nothing of its topic; they do not count towards the match.
QUESTION_WORDS = frozenset({
    "a", "about", "again", "all", "am", "an", "and", "any", "anymore", "are", "as", "at", "be", "been", "but", "by",
    "can", "cannot", "cant", "could", "did", "do", "does", "doesnt", "dont", "for", "from", "get", "got", "had",
    "has", "hasnt", "have", "havent", "how", "i", "if", "im", "in", "into", "is", "isnt", "it", "its", "just",
    "keep", "keeps", "me", "my", "need", "no", "not", "now", "of", "ok", "on", "one", "or", "our", "please",
    "should", "so", "some", "someone", "still", "stuff", "such", "that", "the", "their", "then", "there", "these",
    "they", "thing", "this", "to", "us", "want", "was", "way", "we", "what", "when", "where", "which", "who", "why",
    "will", "with", "wont", "would", "yet", "you", "your",
})
_QUERY_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")  # words, with their apostrophes ("don't" is one word)
_SUBHEADING = re.compile(r"(?m)^#{1,6} ")

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


def opening_text(issue: KnownIssue) -> str:
    """An entry's opening: its page's title, its own title and the text before its first subheading."""
    head = embedding_text(issue).partition("\n")[0]
    return f"{head}\n{_SUBHEADING.split(issue.solution, maxsplit=1)[0].strip()}"


@dataclass(frozen=True)
class Terms:
    """The words of a knowledge base: to correct a message's typos, and to weigh its words by their rarity."""

    words: frozenset[str]  # lower-case, as written
    stems: tuple[frozenset[str], ...]  # per entry
    weights: dict[str, float]  # per stem: log(1 + entries / entries containing it)
    counts: dict[str, int]  # the words that typos are corrected to (four letters or more), with their frequency
    # A word with one letter left out -> the knowledge's words it comes from and where the letter was (a
    # symmetric-delete index: a letter changed, or two swapped, leaves the same word at the same place or next).
    deletions: dict[str, tuple[tuple[str, int], ...]]

    @classmethod
    def of(cls, knowledge: KnowledgeBase) -> Terms:
        """The terms of every entry."""
        texts = [issue.search_text.lower() for issue in knowledge.issues]
        words = [_QUERY_WORD.findall(text) for text in texts]
        stems = tuple(frozenset(stems) for stems in tokenize(texts))
        frequency = Counter(itertools.chain.from_iterable(stems))
        weights = {stem: math.log(1 + len(stems) / n) for stem, n in frequency.items()}
        counts = Counter(w for w in itertools.chain.from_iterable(words) if w.isalpha() and len(w) >= MIN_TYPO_CHARS)
        sources: dict[str, list[tuple[str, int]]] = {}
        for word in counts:
            for place, variant in enumerate(_deletions(word)):
                sources.setdefault(variant, []).append((word, place))
        is_english_word("the")  # loads the English word list (about 0.7 s, once per process) here, off the loop
        return cls(frozenset(itertools.chain.from_iterable(words)), stems, weights, dict(counts),
                   {variant: tuple(found) for variant, found in sources.items()})

    @property
    def rarest(self) -> float:
        """The weight of a word no entry contains."""
        return math.log(1 + len(self.stems))

    def corrected(self, query: str) -> str:
        """The query with each word that neither the knowledge nor English knows replaced by a knowledge word
        one edit away, when there is one ("cancle my acount" -> "cancel my account")."""
        def fix(found: re.Match[str]) -> str:
            word = found.group(0)
            lower = word.lower()
            if (len(lower) < MIN_TYPO_CHARS or not lower.isalpha() or lower in self.words
                    or lower in QUESTION_WORDS or is_english_word(lower)):
                return word
            return self.nearest(lower) or word
        return _QUERY_WORD.sub(fix, query)

    def nearest(self, word: str) -> str | None:
        """The knowledge's most frequent word one edit (a letter added, left out, changed, or two swapped) away."""
        variants = _deletions(word)
        found = {w for w in variants if w in self.counts}  # a letter added
        found.update(w for w, _ in self.deletions.get(word, ()))  # a letter left out
        for place, variant in enumerate(variants):  # a letter changed (same place) or two swapped (next place)
            found.update(w for w, at in self.deletions.get(variant, ()) if abs(at - place) <= 1)
        return max(found, key=lambda w: (self.counts[w], w)) if found else None

    def coverage(self, query: str, entry: int) -> float:
        """Share of the query's content words the entry contains, each weighted by its rarity: 0 to 1."""
        return self.weighed(query).coverage(self.stems[entry])

    def weighed(self, query: str) -> WeighedQuery:
        """The query's content stems with their weights, to score several entries against (tokenized once)."""
        words = [w for w in _QUERY_WORD.findall(query.lower()) if w.replace("'", "") not in QUESTION_WORDS]
        weight = {term: self.weights.get(term, self.rarest) for term in tokenize([" ".join(words)])[0]}
        return WeighedQuery(weight, sum(weight.values()))


@dataclass(frozen=True)
class WeighedQuery:
    """A query's content stems and their rarity weights (Terms.weighed)."""

    weight: dict[str, float]
    total: float

    def coverage(self, stems: frozenset[str]) -> float:
        """Share of the query's weight that an entry with these stems contains: 0 to 1."""
        if not self.total:
            return 0.0
        return sum(self.weight[term] for term in stems.intersection(self.weight)) / self.total


def _deletions(word: str) -> list[str]:
    return [word[:n] + word[n + 1:] for n in range(len(word))]


def fuse(similarity: Vectors, lexical: dict[int, float], weight: float = LEXICAL_WEIGHT) -> list[int]:
    """Entry numbers best first by cosine similarity plus `weight` times BM25 scaled by its best score."""
    scores = similarity.astype(numpy.float64)
    if lexical:
        docs = numpy.fromiter(lexical, dtype=numpy.intp, count=len(lexical))
        bm25 = numpy.fromiter(lexical.values(), dtype=numpy.float64, count=len(lexical))
        scores[docs] += weight * bm25 / bm25.max()
    return numpy.argsort(-scores, kind="stable").tolist()  # type: ignore[no-any-return]


class Retriever:
    """Finds the known issues for a message; scores are matches from 0 to 1 that do not depend on the base's size.

    In `bm25` mode the match is the share of the message's content words the entry contains, each weighted
    by its rarity in the knowledge; in `hybrid` mode it is the mean of that and the cosine similarity of the
    message's and the entry's embeddings, so a message must share meaning and words with an entry to be
    answered from it. The entries are embedded by `documents` (a cache, for a hosted model), a message by
    `embedder`; when the embedder fails, the message is answered by BM25 alone.
    """

    def __init__(self, mode: RetrievalMode, embedder: Embedder | None = None,
                 documents: Embedder | None = None) -> None:
        if mode is RetrievalMode.HYBRID and embedder is None:
            raise ValueError("hybrid retrieval needs an embedder")
        self.mode = mode
        self._embedder = embedder
        self._documents = documents or embedder
        # (knowledge revision, unit rows of the entries' whole texts, unit rows of their openings)
        self._vectors: tuple[str, Vectors, Vectors] | None = None
        self._terms: tuple[str, Terms] | None = None
        self._queries: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = asyncio.Lock()

    async def terms(self, knowledge: KnowledgeBase) -> Terms:
        """The knowledge's terms, read again (on a worker thread, like the English word list) when it changed."""
        cached = self._terms
        if cached and cached[0] == knowledge.revision:
            return cached[1]
        terms = await asyncio.to_thread(Terms.of, knowledge)
        self._terms = (knowledge.revision, terms)
        return terms

    async def index(self, knowledge: KnowledgeBase) -> tuple[Vectors, Vectors]:
        """The entries' unit vectors and their openings', embedded (through the cache) when the knowledge changed."""
        assert self._documents is not None
        cached = self._vectors
        if cached and cached[0] == knowledge.revision:
            return cached[1], cached[2]
        async with self._lock:
            if self._vectors and self._vectors[0] == knowledge.revision:
                return self._vectors[1], self._vectors[2]
            texts = [embedding_text(i) for i in knowledge.issues] + [opening_text(i) for i in knowledge.issues]
            row = {text: n for n, text in enumerate(dict.fromkeys(texts))}  # an entry all opening is embedded once
            vectors = _unit(await self._documents.embed(list(row)))[[row[text] for text in texts]]
            size = len(knowledge.issues)
            self._vectors = (knowledge.revision, vectors[:size], vectors[size:])
            return vectors[:size], vectors[size:]

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
        terms = await self.terms(knowledge)
        query = terms.corrected(query)
        lexical = knowledge.ranked(query, CANDIDATES)
        weighed = terms.weighed(query)
        if self.mode is RetrievalMode.BM25:
            return [(issue, weighed.coverage(terms.stems[n])) for n, issue, _ in lexical[:k]]
        try:
            whole, openings = await self.index(knowledge)
            vector = await self.query_vector(query)
        except EmbeddingError as error:
            log.warning("embeddings unavailable, retrieving by BM25 alone: %s", error)
            return [(issue, weighed.coverage(terms.stems[n])) for n, issue, _ in lexical[:k]]
        similarity = whole @ vector
        blended = (1 - OPENING_WEIGHT) * similarity + OPENING_WEIGHT * (openings @ vector)
        best = fuse(blended, {n: bm25 for n, _, bm25 in lexical})[:k]
        return [(knowledge.issues[n], (weighed.coverage(terms.stems[n]) + max(float(similarity[n]), 0.0)) / 2)
                for n in best]


def searcher(retriever: Retriever, knowledge: Callable[[], KnowledgeBase]) -> Search:
    """A search of the knowledge as it is at each call."""
    async def search(query: str, k: int) -> Hits:
        return await retriever.search(knowledge(), query, k)
    return search


def retriever_for(settings: Settings, sessions: sessionmaker[Session]) -> Retriever:
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
        max_retries=settings.openai_max_retries,
    )
    return Retriever(mode, hosted, documents=CachedEmbedder(hosted, sessions))


def _unit(vectors: Vectors) -> Vectors:
    norms = numpy.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / numpy.where(norms == 0, 1.0, norms)).astype(numpy.float32, copy=False)
