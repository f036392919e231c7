"""Request-shape limits checked before any engine is called: message count, ``max_tokens`` per route, and the
prompt against the served model's context.

Context is estimated, not tokenized: characters / 4 (rounded up). Only the prompt is held against it: like
llama-server (and unlike OpenAI) a ``max_tokens`` beyond the remaining context is not an error, the answer just
stops at the context (``finish_reason: length``); cap ``max_tokens`` per route to bound it (the cap is also the
``max_tokens`` of a request that gives none: ``apply_route_cap``). A ``max_tokens``
above the whole context can never be used: the engine is sent the context instead (``clamp_to_context``), so no
engine sees a count it cannot hold. Calling
the engine's ``/tokenize`` would add a round trip to every request; the estimate errs on the safe side for
English and code, and the engine still rejects the rare prompt that slips through (400 from llama-server).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import context_length_exceeded, max_tokens_exceeded, too_many_messages

DEFAULT_COMPLETION_ESTIMATE = 256  # tokens assumed when a request gives no max_tokens


@dataclass(frozen=True)
class RouteLimits:
    max_messages: int = 0  # 0: unlimited
    max_tokens: int = 0  # cap on max_tokens / max_completion_tokens; 0: none


NO_LIMITS = RouteLimits()  # immutable: shared by every request of a route without limits


@dataclass(frozen=True)
class RequestShapeLimits:
    default: RouteLimits = NO_LIMITS
    routes: Mapping[str, RouteLimits] = field(default_factory=dict)  # route or model glob → limits

    def for_route(self, route: str, model: str) -> RouteLimits:
        if route in self.routes:
            return self.routes[route]
        if model in self.routes:
            return self.routes[model]
        for pattern, limits in self.routes.items():
            if fnmatch.fnmatchcase(route, pattern):
                return limits
        return self.default


def prompt_chars(payload: Mapping[str, Any]) -> int:
    messages = payload.get("messages")
    total = 0
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):
                total += sum(_text_length(p) for p in content)
        return total
    prompt = payload.get("prompt", payload.get("input"))
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list):
        return sum(len(p) * (1 if isinstance(p, str) else 4) if isinstance(p, str | list) else 4 for p in prompt)
    return 0


def _text_length(part: object) -> int:
    """A content part's text length (the schema already refused parts whose text is not a string)."""
    text = part.get("text") if isinstance(part, dict) else None
    return len(text) if isinstance(text, str) else 0


def estimate_prompt_tokens(payload: Mapping[str, Any]) -> int:
    return math.ceil(prompt_chars(payload) / 4)


def requested_completion(payload: Mapping[str, Any]) -> int | None:
    value = payload.get("max_completion_tokens") or payload.get("max_tokens")
    return value if isinstance(value, int) else None


def check_request(payload: Mapping[str, Any], limits: RouteLimits, context_length: int | None, route: str) -> int:
    """Raise a 400 naming the limit; return the token estimate (prompt + completion) for the TPM limiter."""
    messages = payload.get("messages")
    if limits.max_messages and isinstance(messages, list) and len(messages) > limits.max_messages:
        raise too_many_messages(len(messages), limits.max_messages, route)
    completion = requested_completion(payload)
    if limits.max_tokens and completion is not None and completion > limits.max_tokens:
        param = "max_completion_tokens" if payload.get("max_completion_tokens") else "max_tokens"
        raise max_tokens_exceeded(param, completion, limits.max_tokens, route)
    prompt = estimate_prompt_tokens(payload)
    wanted = completion if completion is not None else min(DEFAULT_COMPLETION_ESTIMATE, limits.max_tokens or 10**9)
    if context_length and prompt > context_length:
        raise context_length_exceeded(context_length, prompt, "messages" if isinstance(messages, list) else "prompt")
    return prompt + wanted


def apply_route_cap(payload: dict[str, Any], limits: RouteLimits) -> bool:
    """A generation request that names no ``max_tokens`` gets the route's cap as its ``max_tokens``; True when the
    payload changed.

    A cap that only refused larger numbers would leave the unbounded case unbounded: without a count the engine
    writes until the context is full (a thousand tokens and more), which is exactly what the cap is there to stop.
    """
    if not limits.max_tokens or requested_completion(payload) is not None:
        return False
    if "messages" not in payload and "prompt" not in payload:  # embeddings and the like generate nothing
        return False
    payload["max_tokens"] = limits.max_tokens
    return True


def clamp_to_context(payload: dict[str, Any], context_length: int) -> bool:
    """Lower ``max_tokens`` / ``max_completion_tokens`` above the whole context to it (the answer would stop
    there anyway); True when the payload changed."""
    changed = False
    for name in ("max_tokens", "max_completion_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and value > context_length:
            payload[name] = context_length
            changed = True
    return changed
