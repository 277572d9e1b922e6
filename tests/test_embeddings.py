"""The embeddings boundary: the hosted adapter's requests, the local model offline, the per-hash cache."""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx
import numpy
import pytest
import respx

from service.db import create_db_engine, make_session_factory
from service.embeddings import CachedEmbedder, EmbeddingError, LocalEmbedder, OpenAIEmbedder
from service.embeddings._base import Vectors

BASE = "http://embeddings.test/v1"


def embedding_response(vectors: Sequence[Sequence[float]]) -> httpx.Response:
    """An OpenAI-compatible /embeddings answer."""
    return httpx.Response(200, json={
        "object": "list", "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": i, "embedding": list(v)} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    })


@respx.mock
async def test_hosted_adapter_sends_model_and_texts_and_returns_float32_rows() -> None:
    route = respx.post(f"{BASE}/embeddings").mock(return_value=embedding_response([[1, 0], [0, 1]]))
    embedder = OpenAIEmbedder("text-embedding-3-small", api_key="sk-test", base_url=BASE)
    vectors = await embedder.embed(["where is my payout", "reset password"])
    sent = json.loads(route.calls.last.request.content)
    assert sent == {"model": "text-embedding-3-small", "input": ["where is my payout", "reset password"],
                    "encoding_format": "float"}
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test"
    assert vectors.dtype == numpy.float32 and vectors.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@respx.mock
async def test_hosted_adapter_maps_an_upstream_error_to_embedding_error() -> None:
    respx.post(f"{BASE}/embeddings").mock(return_value=httpx.Response(401, json={"error": {"message": "bad key"}}))
    embedder = OpenAIEmbedder("text-embedding-3-small", api_key="sk-test", base_url=BASE, max_retries=0)
    with pytest.raises(EmbeddingError, match=r"HTTP 401"):
        await embedder.embed(["hello"])


@respx.mock
async def test_hosted_adapter_refuses_an_answer_with_too_few_vectors() -> None:
    respx.post(f"{BASE}/embeddings").mock(return_value=embedding_response([[1, 0]]))
    embedder = OpenAIEmbedder("m", api_key="sk-test", base_url=BASE)
    with pytest.raises(EmbeddingError, match="1 vectors for 2 texts"):
        await embedder.embed(["a", "b"])


async def test_local_model_embeds_offline_and_puts_paraphrases_closer() -> None:
    vectors = await LocalEmbedder().embed(["my money has not arrived", "payout delays", "reset your password"])
    unit = vectors / numpy.linalg.norm(vectors, axis=1, keepdims=True)
    assert vectors.shape == (3, 256) and vectors.dtype == numpy.float32
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


class CountingEmbedder:
    """A deterministic embedder that records what it was asked to embed."""

    model = "counting"

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.asked.append(list(texts))
        return numpy.asarray([[len(t), t.count("a"), 1.0] for t in texts], dtype=numpy.float32)


async def test_cache_embeds_each_text_once_and_only_changed_texts_again(database_url: str) -> None:
    sessions = make_session_factory(create_db_engine(database_url))
    inner = CountingEmbedder()
    first = await CachedEmbedder(inner, sessions).embed(["alpha", "banana", "cherry"])
    again = CachedEmbedder(inner, sessions)  # a new process or replica: only the table is shared
    second = await again.embed(["alpha", "banana", "cherry"])
    assert inner.asked == [["alpha", "banana", "cherry"]] and again.embedded == 0
    assert second.tolist() == first.tolist()
    changed = await again.embed(["alpha", "banana (edited)", "cherry"])
    assert inner.asked[1:] == [["banana (edited)"]] and again.embedded == 1
    assert changed[1].tolist() == [15.0, 3.0, 1.0]


async def test_cache_keeps_models_apart(database_url: str) -> None:
    sessions = make_session_factory(create_db_engine(database_url))
    inner = CountingEmbedder()
    await CachedEmbedder(inner, sessions).embed(["alpha"])
    other = CountingEmbedder()
    other.model = "another-model"
    await CachedEmbedder(other, sessions).embed(["alpha"])
    assert other.asked == [["alpha"]]
