"""``n`` choices from several engine calls, for engines that cannot produce them all in one call with their usage
counted (llama.cpp counts one choice's tokens): the parts run concurrently, each with its own attempts, and their
choices are merged into one answer — indexes renumbered, completion tokens summed, the prompt counted once.

Whole answers only: a stream of more choices than the engine produces in one call is refused by the adapt stage
(``Adapter.check``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from modelyard.asgi import Send, send_bytes
from modelyard.gateway.exchange import Exchange
from modelyard.gateway.inner import Captured

if TYPE_CHECKING:
    from modelyard.gateway.forward import Call

Attempts = Callable[[Send, Exchange, "Call"], Awaitable[int]]


async def fan_out(attempts: Attempts, send: Send, exchange: Exchange, call: Call, parts: int) -> int:
    total = call.adapter.n if call.adapter is not None else parts
    sizes = [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
    children = [exchange.child() for _ in sizes]
    captures = [Captured() for _ in sizes]
    # the first failure (an APIError) is raised to the pipeline
    parts_run = zip(captures, children, sizes, strict=True)
    await asyncio.gather(*(attempts(capture, child, call.part(size)) for capture, child, size in parts_run))
    failed = next((c for c in captures if c.status != 200), None)
    exchange.absorb(children)
    if failed is not None:
        await send_bytes(send, failed.status, failed.body, exchange.headers())
        return failed.status
    merged = merge_choices([orjson.loads(c.body) for c in captures])
    body = orjson.dumps(merged)
    exchange.keep_response(body)
    await send_bytes(send, 200, body, exchange.headers())
    return 200


def merge_choices(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One answer holding every part's choices, renumbered in order, with the completion tokens summed."""
    merged = dict(answers[0])
    choices: list[dict[str, Any]] = []
    for answer in answers:
        for choice in answer.get("choices") or []:
            choices.append({**choice, "index": len(choices)})
    merged["choices"] = choices
    usages = [a.get("usage") or {} for a in answers]
    prompt = int(usages[0].get("prompt_tokens") or 0)
    completion = sum(int(u.get("completion_tokens") or 0) for u in usages)
    merged["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    merged.pop("timings", None)
    return merged
