"""Rated request-log rows as chat-format dataset lines (chat and completion prompts, JSON and SSE answers)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from modelyard.rollouts.dataset import example, prompt_messages
from modelyard.rollouts.feedback import Feedback

NOW = datetime(2026, 12, 1, tzinfo=UTC)
RATED = Feedback("r1", "m", "m", "2", "m:2", 0.75, "4", "fine", NOW, NOW)


def test_a_chat_answer_becomes_the_assistant_turn() -> None:
    row = {
        "endpoint": "chat",
        "stream": False,
        "request_body": orjson.dumps({"messages": [{"role": "user", "content": "Hi"}]}).decode(),
        "response_body": orjson.dumps({"choices": [{"message": {"role": "assistant", "content": "Hello"}}]}).decode(),
    }
    line = example(row, RATED)
    assert line is not None
    assert line["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert (line["answer"], line["score"], line["raw_score"], line["version"]) == ("Hello", 0.75, "4", "2")


def test_a_streamed_completion_and_rows_without_bodies() -> None:
    sse = 'data: {"choices":[{"text":"Hel"}]}\n\ndata: {"choices":[{"text":"lo"}]}\n\ndata: [DONE]\n\n'
    row = {"endpoint": "completions", "stream": True, "request_body": '{"prompt": "Say"}', "response_body": sse}
    line = example(row, RATED)
    assert line is not None and line["prompt"] == [{"role": "user", "content": "Say"}] and line["answer"] == "Hello"
    assert example({"request_body": None, "response_body": None}, RATED) is None
    assert prompt_messages("not json", "chat") is None and prompt_messages("[1]", "chat") is None
