"""With ``--embeddings`` the deployment answers /v1/embeddings through the gateway (OpenAI SDK)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]


@pytest.fixture(scope="module")
def embedding_gateway(
    tmp_path_factory: pytest.TempPathFactory, engine_build, default_model_path: Path
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("emb"), "--embeddings", "--parallel", "2", "--ctx-size", "2048")
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


def test_embeddings_for_a_batch(embedding_gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=f"{embedding_gateway.url}/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(model=MODEL, input=["the cat sat", "the cat sat", "stock markets fell"])
    vectors = [item.embedding for item in result.data]
    assert len(vectors) == 3
    assert len(vectors[0]) == 640  # Gemma 3 270M hidden size
    cosine = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True)) / (
        math.hypot(*vectors[0]) * math.hypot(*vectors[2])
    )
    assert vectors[0] == vectors[1]
    assert cosine < 0.999
    assert result.usage.prompt_tokens > 0
