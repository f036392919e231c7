"""Rated answers as a chat-format dataset: one JSON object per rated request whose bodies were kept.

``modelyard requests export --feedback`` writes these lines for offline evaluation or fine-tuning: the
conversation (the prompt's messages, then the answer as the assistant's turn), the prompt and answer on their
own, the score (0..1, 1 = best) with what the client sent, and the model version that answered.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelyard.rollouts.feedback import Feedback
from modelyard.routing.compare import answer_text


def prompt_messages(request_body: str, endpoint: str) -> list[dict[str, Any]] | None:
    """The prompt as chat messages: a chat request's messages; a completion's prompt as one user turn."""
    try:
        body = orjson.loads(request_body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list):
        return [m for m in messages if isinstance(m, dict)]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return None


def example(row: dict[str, Any], feedback: Feedback) -> dict[str, Any] | None:
    """One dataset line from a request-log row (with bodies) and its feedback; None without usable bodies."""
    request_body, response_body = row.get("request_body"), row.get("response_body")
    if not request_body or response_body is None:
        return None
    messages = prompt_messages(request_body, row.get("endpoint", ""))
    if messages is None:
        return None
    answer = answer_text(response_body.encode(), bool(row.get("stream")))
    return {
        "messages": [*messages, {"role": "assistant", "content": answer}],
        "prompt": messages,
        "answer": answer,
        "score": feedback.score,
        "raw_score": feedback.raw,
        "comment": feedback.comment,
        "model": feedback.model,
        "version": feedback.version,
        "target": feedback.target,
        "route": feedback.route,
        "request_id": feedback.request_id,
    }
