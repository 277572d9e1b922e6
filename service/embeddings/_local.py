"""WordLlama's small static model, whose weights and tokenizer ship inside the `wordllama` wheel."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy

from ._base import EmbeddingError, Vectors

LOCAL_MODEL = "wordllama-l2-supercat-256"
_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")


def _load() -> Any:
    # WordLlama.load() looks for the tokenizer under "tokenizer/" while the wheel ships it under
    # "tokenizers/", then downloads it from a hub; building the model from the packaged files never does.
    import wordllama
    from safetensors import safe_open
    from wordllama.inference import WordLlamaInference

    root = Path(wordllama.__file__).parent
    weights, tokenizer_file = root.joinpath(*_WEIGHTS), root.joinpath(*_TOKENIZER)
    if not weights.exists() or not tokenizer_file.exists():
        raise EmbeddingError(f"the wordllama package has no {weights.name} or {tokenizer_file.name}")
    tokenizer = wordllama.WordLlama.load_tokenizer(tokenizer_file)
    with safe_open(str(weights), framework="np", device="cpu") as tensors:
        embedding = tensors.get_tensor("embedding.weight")
    return WordLlamaInference(embedding, tokenizer)


class LocalEmbedder:
    """Embeds in process with no network and no API key (loaded on first use, about a second)."""

    model = LOCAL_MODEL

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _load()
            return self._model

    def embed_now(self, texts: Sequence[str]) -> Vectors:
        """The vectors, computed in the calling thread."""
        if not texts:
            return numpy.zeros((0, 0), dtype=numpy.float32)
        vectors = self._loaded().embed(list(texts), norm=False)
        return numpy.asarray(vectors, dtype=numpy.float32)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """The vectors; a long batch runs on a worker thread so the event loop keeps serving."""
        if len(texts) <= 4 and self._model is not None:
            return self.embed_now(texts)
        return await asyncio.to_thread(self.embed_now, texts)
