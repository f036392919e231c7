"""The adapt stage's pure parts: what is sent for tools, formats, logprobs, n and echo, and how answers map back."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from modelyard.deploy.capabilities import llama_cpp
from modelyard.errors import APIError
from modelyard.gateway.adapt import Adapter
from modelyard.gateway.fanout import merge_choices
from modelyard.gateway.logprobs_shape import LegacyLogprobs, chat_logprobs
from modelyard.gateway.parse import CHAT, COMPLETIONS, Parsed
from modelyard.gateway.schemas import ChatCompletionRequest, CompletionRequest
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.shaper import AnswerShaper
from modelyard.routing.capabilities import OPENAI_COMPATIBLE

LLAMA = llama_cpp(parallel=4, template_knows_tools=False)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _adapter(payload: dict[str, Any], stream: bool = False) -> Adapter:
    chat = "messages" in payload
    schema = ChatCompletionRequest if chat else CompletionRequest
    validated = msgspec.convert(payload, schema)
    parsed = Parsed(CHAT if chat else COMPLETIONS, b"", payload, payload["model"], stream, False, validated)
    adapter = Adapter.of(parsed, GatewaySettings())
    assert adapter is not None
    return adapter


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}], **extra}


def _answer(content: str, finish: str = "stop") -> bytes:
    message = {"role": "assistant", "content": content}
    return orjson.dumps({"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": {}})


def test_plain_requests_skip_the_adapt_stage() -> None:
    validated = msgspec.convert(_chat(max_tokens=3), ChatCompletionRequest)
    assert not validated.adapted


def test_required_tool_choice_is_constrained_and_mapped_to_tool_calls() -> None:
    adapter = _adapter(_chat(tools=[WEATHER], tool_choice="required"))
    sent = adapter.payload_for(_chat(tools=[WEATHER], tool_choice="required"), LLAMA)
    assert "tools" not in sent and "tool_choice" not in sent
    assert sent["response_format"]["type"] == "json_schema"
    assert "get_weather" in sent["messages"][0]["content"]  # the tools are described in a system turn
    calls = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}] * 2}
    shaped = orjson.loads(AnswerShaper(adapter, LLAMA, lambda kind: None).json(_answer(orjson.dumps(calls).decode())))
    choice = shaped["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]  # the verbatim repeat is dropped
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_a_cut_or_invalid_tool_call_is_never_returned_as_one() -> None:
    adapter = _adapter(_chat(tools=[WEATHER], tool_choice="required"))
    invalid: list[str] = []
    shaper = AnswerShaper(adapter, LLAMA, invalid.append)
    cut = orjson.loads(shaper.json(_answer('{"tool_calls": [{"name": "get_weather", "argu', "length")))
    assert cut["choices"][0]["finish_reason"] == "length"
    assert "tool_calls" not in cut["choices"][0]["message"]
    wrong = _answer('{"tool_calls": [{"name": "get_weather", "arguments": {"town": 3}}]}')
    assert orjson.loads(shaper.json(wrong))["choices"][0]["finish_reason"] == "invalid_output"
    assert invalid == ["tool_calls", "tool_calls"]


def test_streamed_tool_calls_arrive_as_openai_deltas() -> None:
    adapter = _adapter(_chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    shaper = AnswerShaper(adapter, LLAMA, lambda kind: None)
    text = '{"tool_calls":[{"name":"get_weather","arguments":{"city":"Oslo"}}]}'
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]}]
    chunks += [{"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} for piece in text]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = shaper.events([b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"])
    decoded = [orjson.loads(e[6:]) for e in events if not e.startswith(b"data: [DONE]")]
    deltas = [c["choices"][0] for c in decoded]
    assert not any(d["delta"].get("content") for d in deltas)
    [call] = [tc for d in deltas for tc in d["delta"].get("tool_calls", [])]
    assert call["index"] == 0 and call["function"]["name"] == "get_weather"
    assert deltas[-1]["finish_reason"] == "tool_calls"


def test_tool_turns_round_trip_through_a_template_without_tools() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    payload = {"model": "m", "messages": messages, "tools": [WEATHER]}
    sent = _adapter(payload).payload_for(payload, LLAMA)
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert orjson.loads(sent["messages"][2]["content"])["tool_calls"][0]["arguments"] == {"city": "Oslo"}
    assert "sunny" in sent["messages"][3]["content"]


def test_structured_output_is_validated_and_finish_reason_says_why() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema, "strict": True}}
    adapter = _adapter(_chat(response_format=fmt))
    shaper = AnswerShaper(adapter, LLAMA, lambda kind: None)
    assert orjson.loads(shaper.json(_answer('{"age": 3}')))["choices"][0]["finish_reason"] == "stop"
    assert orjson.loads(shaper.json(_answer('{"age": "x"}')))["choices"][0]["finish_reason"] == "invalid_output"
    assert orjson.loads(shaper.json(_answer('{"ag', "length")))["choices"][0]["finish_reason"] == "length"


def test_logprobs_in_openai_shapes() -> None:
    entry = {
        "id": 7,
        "token": "Hi",
        "bytes": [72, 105],
        "logprob": -1.0,
        "top_logprobs": [{"id": 7, "token": "Hi", "bytes": [72, 105], "logprob": -1.0}],
    }
    assert chat_logprobs({"content": [entry]}) == {
        "content": [
            {
                "token": "Hi",
                "logprob": -1.0,
                "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -1.0, "bytes": [72, 105]}],
            }
        ],
        "refusal": None,
    }
    second = {"token": " là", "bytes": [32, 108, 195, 160], "logprob": -2.0, "top_logprobs": []}
    assert LegacyLogprobs().convert({"content": [entry, second]}) == {
        "tokens": ["Hi", " là"],
        "token_logprobs": [-1.0, -2.0],
        "top_logprobs": [{"Hi": -1.0}, {}],
        "text_offset": [0, 2],
    }


def test_what_llama_cpp_cannot_do_is_a_400_naming_the_limit() -> None:
    adapter = _adapter({"model": "m", "prompt": "Hi", "echo": True, "logprobs": 1})
    with pytest.raises(APIError) as refused:
        adapter.check(LLAMA)
    assert refused.value.status == 400 and "llama.cpp" in refused.value.message
    assert refused.value.param == "echo"
    adapter.check(OPENAI_COMPATIBLE)  # an engine that computes prompt logprobs gets the request as is
    with pytest.raises(APIError):
        _adapter(_chat(n=8, stream=True), stream=True).check(LLAMA)  # more choices than its 4 slots, streamed


def test_echo_without_logprobs_is_done_by_the_gateway() -> None:
    adapter = _adapter({"model": "m", "prompt": "Hello", "echo": True})
    assert "echo" not in adapter.payload_for({"model": "m", "prompt": "Hello", "echo": True}, LLAMA)
    answer = orjson.dumps({"choices": [{"index": 0, "text": " there", "finish_reason": "length"}]})
    assert orjson.loads(AnswerShaper(adapter, LLAMA, lambda k: None).json(answer))["choices"][0]["text"] == (
        "Hello there"
    )


def test_n_fans_out_where_the_engine_does_not_count_every_choice() -> None:
    assert _adapter(_chat(n=3)).parts(LLAMA) == 3
    assert _adapter(_chat(n=3)).parts(OPENAI_COMPATIBLE) == 1
    assert _adapter(_chat(n=3, stream=True), stream=True).parts(LLAMA) == 1  # the stream's usage chunks are summed
    merged = merge_choices(
        [
            {"choices": [{"index": 0, "text": "a"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
            {"choices": [{"index": 0, "text": "b"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3}},
        ]
    )
    assert [c["index"] for c in merged["choices"]] == [0, 1]
    assert merged["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_n_above_the_gateway_cap_is_refused() -> None:
    with pytest.raises(APIError) as refused:
        _adapter(_chat(n=17))
    assert refused.value.param == "n"
