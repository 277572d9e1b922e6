"""Text embeddings: one interface, a local model shipped inside a PyPI package, a hosted endpoint, a cache."""

from ._base import Embedder, EmbeddingError
from ._cache import CachedEmbedder, content_hash
from ._local import LOCAL_MODEL, LocalEmbedder
from ._openai import OpenAIEmbedder

__all__ = [
    "LOCAL_MODEL",
    "CachedEmbedder",
    "EmbeddingError",
    "Embedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "content_hash",
]
