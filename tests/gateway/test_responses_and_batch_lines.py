"""The Responses API's mapping onto chat, and the batch file's line-by-line validation (pure)."""

from __future__ import annotations

import orjson
import pytest

from modelyard.batches.lines import BatchRequestError, parse_lines
from modelyard.gateway.responses_shape import ResponseEvents, assistant_message, chat_request, from_chat_answer


def test_a_responses_request_becomes_a_chat_request() -> None:
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    body = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
            {"role": "user", "content": [{"type": "input_text", "text": "And?"}]},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}},
        "max_output_tokens": 9,
    }
    chat = chat_request(body, history)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "assistant", "tool", "user"]
    assert chat["messages"][3]["tool_calls"][0]["id"] == "c1"
    assert chat["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"]["json_schema"]["name"] == "x"
    assert chat["max_tokens"] == 9


def test_a_chat_answer_becomes_a_response_with_output_items() -> None:
    answer = {
        "model": "m:1",
        "choices": [
            {
                "message": {
                    "content": "Hi",
                    "tool_calls": [{"id": "call_9", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    response = from_chat_answer({"model": "m"}, "resp_1", answer)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [i["type"] for i in response["output"]] == ["message", "function_call"]
    assert response["usage"]["total_tokens"] == 5
    assert assistant_message(response)["tool_calls"][0]["id"] == "call_9"


def test_a_chat_stream_becomes_typed_events_in_order() -> None:
    events = ResponseEvents({"model": "m"}, "resp_1")
    out = events.start()
    for piece in ("He", "llo"):
        out += events.chunk({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    out += events.chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {}})
    out += events.finish()
    kinds = [orjson.loads(e.split(b"data: ", 1)[1])["type"] for e in out]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    numbers = [orjson.loads(e.split(b"data: ", 1)[1])["sequence_number"] for e in out]
    assert numbers == list(range(len(out)))
    assert events.final is not None and events.final["output"][0]["content"][0]["text"] == "Hello"


def _line(custom_id: str, **body: object) -> bytes:
    request = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", **body}}
    return orjson.dumps(request)


def test_batch_lines_are_checked_with_their_line_numbers() -> None:
    good = b"\n".join([_line("a"), b"", _line("b")])
    assert [line.line for line in parse_lines(good, 10)] == [1, 3]
    for content, problem in (
        (_line("a") + b"\n{nope", "Line 2: not valid JSON"),
        (_line("a") + b"\n" + _line("a"), "Line 2: custom_id 'a' is used by an earlier line"),
        (_line("a", stream=True), "Line 1: stream is not supported"),
        (b'{"custom_id": "x", "method": "GET"}', "Line 1: method must be POST"),
    ):
        with pytest.raises(BatchRequestError) as refused:
            parse_lines(content, 10)
        assert str(refused.value).startswith(problem)
    with pytest.raises(BatchRequestError):
        parse_lines(b"\n".join(_line(str(i)) for i in range(3)), 2)
