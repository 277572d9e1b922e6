"""Embeddings stored per (model, content hash), so re-indexing embeds only texts it has not seen."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

import numpy
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..db import transaction
from ..models import EmbeddingCache
from ._base import Embedder, Vectors

_LOOKUP_CHUNK = 500  # hashes per IN (...) query


def content_hash(text: str) -> str:
    """The cache key of a text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachedEmbedder:
    """An Embedder that asks `inner` only for texts whose vectors are not in the `embeddings` table yet."""

    def __init__(self, inner: Embedder, sessions: sessionmaker[Session]) -> None:
        self.inner = inner
        self.model = inner.model
        self._sessions = sessions
        self.embedded = 0  # texts sent to the inner model since this object was made

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """The vectors, from the table where stored, else from the model (and then stored)."""
        hashes = [content_hash(text) for text in texts]
        known = await asyncio.to_thread(self._load, sorted(set(hashes)))
        missing = {h: t for h, t in zip(hashes, texts, strict=True) if h not in known}
        if missing:
            fresh = await self.inner.embed(list(missing.values()))
            self.embedded += len(missing)
            new = dict(zip(missing, fresh, strict=True))
            try:
                await asyncio.to_thread(self._store, new)
            except IntegrityError:
                pass  # a replica stored the same vectors between our look and our insert: theirs are as good
            known.update(new)
        if not texts:
            return numpy.zeros((0, 0), dtype=numpy.float32)
        return numpy.stack([known[h] for h in hashes]).astype(numpy.float32, copy=False)

    def _load(self, hashes: list[str]) -> dict[str, Vectors]:
        found: dict[str, Vectors] = {}
        with transaction(self._sessions) as session:
            for start in range(0, len(hashes), _LOOKUP_CHUNK):
                rows = session.execute(
                    select(EmbeddingCache.content_hash, EmbeddingCache.vector).where(
                        EmbeddingCache.model == self.model,
                        EmbeddingCache.content_hash.in_(hashes[start:start + _LOOKUP_CHUNK]),
                    )
                )
                for digest, blob in rows:
                    found[digest] = numpy.frombuffer(blob, dtype="<f4").copy()
        return found

    def _store(self, vectors: dict[str, Vectors]) -> None:
        with transaction(self._sessions) as session:
            present = set(session.scalars(select(EmbeddingCache.content_hash).where(
                EmbeddingCache.model == self.model, EmbeddingCache.content_hash.in_(list(vectors)))))
            for digest, vector in vectors.items():
                if digest not in present:  # another replica may have stored it meanwhile
                    session.add(EmbeddingCache(model=self.model, content_hash=digest, dimensions=int(vector.shape[0]),
                                               vector=numpy.asarray(vector, dtype="<f4").tobytes()))
