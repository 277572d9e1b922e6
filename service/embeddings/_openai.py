"""An OpenAI-compatible `/v1/embeddings` endpoint: the only place that calls it."""

from __future__ import annotations

from collections.abc import Sequence

import httpx2
import numpy
import openai

from ._base import EmbeddingError, Vectors

BATCH = 256  # inputs per request, well under the API's limit of 2048


class OpenAIEmbedder:
    """Embeds through the configured endpoint, in batches, mapping its errors to EmbeddingError."""

    def __init__(self, model: str, api_key: str, base_url: str | None = None, timeout: float = 30.0,
                 max_retries: int = 1) -> None:
        self.model = model
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout,
            http_client=httpx2.AsyncClient(timeout=timeout),  # httpx2, as the model's client (findings 0h)
        )

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """The vectors, one request per batch of inputs."""
        rows: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            rows.extend(await self._embed_batch(list(texts[start:start + BATCH])))
        if not rows:
            return numpy.zeros((0, 0), dtype=numpy.float32)
        return numpy.asarray(rows, dtype=numpy.float32)

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        try:
            response = await self._client.embeddings.create(model=self.model, input=batch, encoding_format="float")
        except openai.OpenAIError as error:
            status = getattr(error, "status_code", None)
            raise EmbeddingError(f"embedding model {self.model}: {type(error).__name__}"
                                 + (f" (HTTP {status})" if status else "")) from error
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch) or len({len(item.embedding) for item in data}) != 1:
            raise EmbeddingError(f"embedding model {self.model} answered {len(data)} vectors for {len(batch)} texts")
        return [list(item.embedding) for item in data]
