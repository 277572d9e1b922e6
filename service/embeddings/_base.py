"""The embedding interface: texts in, one float32 vector per text out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy
import numpy.typing as npt

Vectors = npt.NDArray[numpy.float32]


class EmbeddingError(Exception):
    """The embedding model could not embed the texts (unreachable, refused, malformed answer)."""


class Embedder(Protocol):
    """Turns texts into vectors; `model` names the vectors' space (the cache key)."""

    model: str

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One row per text, float32, in the order given."""
        ...
