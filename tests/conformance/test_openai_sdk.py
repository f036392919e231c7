"""The official ``openai`` SDK, unmodified, against a real gateway, llama-server and the default Gemma base model:
tool calls, structured output, logprobs, n, the Responses API and the Batch API."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = pytest.mark.engine

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1}},  # the engine may not answer ""
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def test_required_tool_choice_returns_valid_tool_calls_on_the_base_model(gateway: GatewayProcess) -> None:
    client = _client(gateway)
    answer = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=160
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls
    assert calls and all(c.function.name == "get_weather" for c in calls)
    assert all(isinstance(json.loads(c.function.arguments)["city"], str) for c in calls)
    # the call and its result round-trip in the next request
    follow_up = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [calls[0].model_dump()]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 21 C"},
    ]
    again = client.chat.completions.create(model=MODEL, messages=follow_up, tools=[WEATHER], max_tokens=8)
    assert again.choices[0].finish_reason in ("stop", "length", "tool_calls", "invalid_output")


def test_named_tool_choice_streams_tool_call_deltas(gateway: GatewayProcess) -> None:
    stream = _client(gateway).chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=160,
        stream=True,
    )
    deltas, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            deltas.extend(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather"
    assert "city" in json.loads(deltas[0].function.arguments)


def test_tool_choice_none_never_calls(gateway: GatewayProcess) -> None:
    answer = _client(gateway).chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=6
    )
    assert not answer.choices[0].message.tool_calls


def test_structured_output_is_validated_or_says_why_not(gateway: GatewayProcess) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    client = _client(gateway)
    whole = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "A person"}], response_format=fmt, max_tokens=60
    )
    if whole.choices[0].finish_reason == "stop":
        assert set(json.loads(whole.choices[0].message.content or "")) == {"name", "age"}
    else:
        assert whole.choices[0].finish_reason in ("length", "invalid_output")
    cut = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "A person"}], response_format=fmt, max_tokens=3
    )
    assert cut.choices[0].finish_reason == "length"  # never passed off as a valid answer
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert 'modelyard_structured_output_invalid_total{kind="json_schema"}' in metrics


def test_logprobs_in_openai_shapes(gateway: GatewayProcess) -> None:
    client = _client(gateway)
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], logprobs=True, top_logprobs=2, max_tokens=3
    )
    entry = chat.choices[0].logprobs.content[0]
    assert set(entry.model_dump()) == {"token", "logprob", "bytes", "top_logprobs"}
    assert len(entry.top_logprobs) == 2 and entry.logprob <= 0
    text = client.completions.create(model=MODEL, prompt="The capital of France is", logprobs=2, max_tokens=3)
    logprobs = text.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset) == 3
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)
    assert logprobs.text_offset[0] == 0 and "".join(logprobs.tokens) == text.choices[0].text
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=MODEL, prompt="Hi", logprobs=1, echo=True, max_tokens=1)
    assert "llama.cpp" in refused.value.message and refused.value.body["param"] == "echo"


def test_n_choices_whole_and_streamed(gateway: GatewayProcess) -> None:
    client = _client(gateway)
    whole = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=3, max_tokens=4, temperature=1
    )
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert whole.usage.completion_tokens > 4  # more than one choice's max_tokens: every choice counted
    stream = client.completions.create(
        model=MODEL, prompt="Once", n=2, max_tokens=3, stream=True, stream_options={"include_usage": True}
    )
    indexes, usage = set(), None
    for chunk in stream:
        indexes.update(c.index for c in chunk.choices)
        usage = chunk.usage or usage
    assert indexes == {0, 1}
    assert usage is not None and usage.completion_tokens > 3  # summed over both choices


def test_responses_create_stream_and_follow_up(gateway: GatewayProcess) -> None:
    client = _client(gateway)
    first = client.responses.create(
        model=MODEL, instructions="Answer briefly.", input="Name a colour.", max_output_tokens=6
    )
    assert first.object == "response" and first.output_text
    assert client.responses.retrieve(first.id).id == first.id
    follow = client.responses.create(
        model=MODEL, input="Another one?", previous_response_id=first.id, max_output_tokens=4
    )
    assert follow.previous_response_id == first.id and follow.usage.input_tokens > first.usage.input_tokens
    with client.responses.stream(model=MODEL, input="Say hello", max_output_tokens=40) as stream:
        kinds = [event.type for event in stream]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in kinds
    assert kinds[-1] in ("response.completed", "response.incomplete")
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_async_responses_with_a_tool(gateway: GatewayProcess) -> None:
    async def main() -> object:
        async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as client:
            tool = {"type": "function", **WEATHER["function"]}
            return await client.responses.create(
                model=MODEL, input="Weather in Rome?", tools=[tool], tool_choice="required", max_output_tokens=160
            )

    response = asyncio.run(main())
    calls = [item for item in response.output if item.type == "function_call"]  # type: ignore[attr-defined]
    assert calls and json.loads(calls[0].arguments)["city"]


def test_batch_runs_in_the_background(gateway: GatewayProcess) -> None:
    client = _client(gateway)
    lines = [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": f"Say {i}"}], "max_tokens": 2},
        }
        for i in range(6)
    ]
    upload = client.files.create(file=("in.jsonl", "\n".join(json.dumps(x) for x in lines).encode()), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 6
    output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in output) == [f"q{i}" for i in range(6)]
    assert all(o["response"]["status_code"] == 200 for o in output)
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", json.dumps(lines[0]).encode() + b"\nnot json"), purpose="batch")
    assert "Line 2" in refused.value.message
