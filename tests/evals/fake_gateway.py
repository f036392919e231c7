"""An in-process stand-in for a modelyard gateway, for runner tests that need exact failure modes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

ROUTES = ["good", "flaky", "down", "judge-good", "judge-bad"]


def _answer(model: str, text: str) -> web.Response:
    body = {"model": f"{model}:1", "choices": [{"text": text, "message": {"content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split())}}  # fmt: skip
    return web.json_response(body, headers={"x-modelyard-model-version": f"{model}:1"})


@asynccontextmanager
async def fake_gateway() -> AsyncIterator[tuple[str, Counter[str]]]:
    calls: Counter[str] = Counter()

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": r} for r in ROUTES]})

    async def generate(request: web.Request) -> web.Response:
        body = await request.json()
        model = body["model"]
        calls[model] += 1
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        if model == "down":
            return web.json_response({"error": {"message": "engine starting"}}, status=503)
        if model == "flaky" and calls[model] == 1:
            return web.json_response({"error": {"message": "try again"}}, status=503, headers={"retry-after": "0"})
        if model == "judge-good":
            return _answer(model, '{"score": 0.9, "reasoning": "names the city"}')
        if model == "judge-bad":
            return _answer(model, "What a lovely answer <eos>")
        if "sleep" in prompt:
            await asyncio.sleep(3)
        if "too long" in prompt:
            return web.json_response({"error": {"message": "prompt exceeds the context"}}, status=400)
        return _answer(model, "Paris is the capital" if "France" in prompt else "I do not know")

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", generate)
    app.router.add_post("/v1/chat/completions", generate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", calls
    finally:
        await runner.cleanup()
