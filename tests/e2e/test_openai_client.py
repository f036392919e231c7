"""The official OpenAI SDK against a real gateway, engine and model."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from conftest import MODEL, MODEL_V1
from gateway_process import GatewayProcess

pytestmark = pytest.mark.engine


def _client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_default_model(gateway: GatewayProcess) -> None:
    models = _client(gateway).models.list()
    assert [m.id for m in models.data] == [MODEL, MODEL_V1, f"{MODEL}@production"]
    assert _client(gateway).models.retrieve(MODEL).id == MODEL


def test_sync_chat_completion(gateway: GatewayProcess) -> None:
    response = _client(gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0,
    )
    assert response.object == "chat.completion"
    assert response.model == MODEL_V1
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content
    assert response.usage.completion_tokens >= 1
    assert response.usage.prompt_tokens > 5


def test_chat_uses_the_gemma_turn_template(gateway: GatewayProcess) -> None:
    """A base GGUF has no template: without ours the prompt would be raw text, or the word 'gemma'."""
    engine = f"http://127.0.0.1:{gateway.engine_port()}"
    rendered = httpx.post(
        f"{engine}/apply-template", json={"messages": [{"role": "user", "content": "Hi"}]}, timeout=10
    ).json()["prompt"]
    assert rendered == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_sync_completion_is_deterministic_at_temperature_zero(gateway: GatewayProcess) -> None:
    client = _client(gateway)
    first = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0)
    second = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0)
    assert first.choices[0].text
    assert first.choices[0].text == second.choices[0].text
    assert first.usage.completion_tokens == 6


def test_name_alias_and_version_reach_the_same_version(gateway: GatewayProcess) -> None:
    client = _client(gateway)
    for model_id in (MODEL, f"{MODEL}@production", MODEL_V1):
        raw = client.completions.with_raw_response.create(model=model_id, prompt="Hello", max_tokens=2)
        assert raw.headers["x-modelyard-model-version"] == MODEL_V1
        assert raw.parse().model == MODEL_V1


def test_async_chat_completions_run_concurrently(gateway: GatewayProcess) -> None:
    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
        async with client:
            responses = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": f"Count to {n}."}], max_tokens=8
                    )
                    for n in range(4)
                )
            )
        return [r.choices[0].message.content or "" for r in responses]

    contents = asyncio.run(main())
    assert len(contents) == 4
    assert all(contents)


def test_streaming_chat_arrives_incrementally(gateway: GatewayProcess) -> None:
    stream = _client(gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a long story about a ship."}],
        max_tokens=48,
        temperature=0,
        stream=True,
    )
    arrivals = []
    pieces = []
    finish = None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        assert chunk.choices, "the usage chunk the gateway requested for accounting must not leak to the client"
        if chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
            pieces.append(chunk.choices[0].delta.content)
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "length"
    assert len(pieces) >= 20
    # Passed through as generated, not buffered: tokens spread over the generation time.
    assert arrivals[-1] - arrivals[0] > 0.1


def test_streaming_with_usage_requested_by_the_client(gateway: GatewayProcess) -> None:
    stream = _client(gateway).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_streaming_completion_async(gateway: GatewayProcess) -> None:
    async def main() -> str:
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
        async with client:
            stream = await client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, stream=True)
            return "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])

    assert len(asyncio.run(main())) > 5


def test_template_folds_system_and_content_parts_into_the_first_user_turn(gateway: GatewayProcess) -> None:
    engine = f"http://127.0.0.1:{gateway.engine_port()}"
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    rendered = httpx.post(f"{engine}/apply-template", json={"messages": messages}, timeout=10).json()["prompt"]
    assert rendered == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )
