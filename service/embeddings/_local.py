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


_model: Any = None  # one per process, whatever the number of LocalEmbedder objects
_model_lock = threading.Lock()


def _shared_model() -> Any:
    global _model
    with _model_lock:
        if _model is None:
            _model = _load()
        return _model


class LocalEmbedder:
    """Embeds in process with no network and no API key (loaded once per process on first use, about a second)."""

    model = LOCAL_MODEL

    def embed_now(self, texts: Sequence[str]) -> Vectors:
        """The vectors, computed in the calling thread."""
        if not texts:
            return numpy.zeros((0, 0), dtype=numpy.float32)
        vectors = _shared_model().embed(list(texts), norm=False)
        return numpy.asarray(vectors, dtype=numpy.float32)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """The vectors; loading the model or a long batch runs on a worker thread so the event loop keeps serving.

        A message or two embeds in well under a millisecond once loaded (a lookup and a mean), less than a
        thread hop costs, so those stay on the loop.
        """
        if len(texts) <= 4 and _model is not None:
            return self.embed_now(texts)
        return await asyncio.to_thread(self.embed_now, texts)
