"""The mock upstream again, on aiohttp's web server: the kind of mock the issue's orientation probes used.

``bench.mock_upstream`` (raw asyncio + httptools) is the default because it is several times faster, so the gateway
is what gets measured. This variant exists to compare like with like against numbers taken with an aiohttp mock
(``bench.overhead --mock aiohttp``): same answers (shared ``Generation``), same flags.

    python -m bench.mock_aiohttp --port 9100 [--latency-ms 0] [--token-rate 0] [--tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools

import orjson
import uvloop
from aiohttp import web

from bench.mock_upstream import Generation, MockSettings


def build_app(settings: MockSettings) -> web.Application:
    ids = itertools.count()

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = orjson.loads(body)
            generation = Generation.of(request.path.endswith("chat/completions"), payload, len(body), settings)
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"error": {"message": "bad JSON"}}, status=400)
        request_id = f"cmpl-mock-{next(ids)}"
        if not generation.stream:
            if settings.latency_ms > 0:
                await asyncio.sleep(settings.latency_ms / 1000)
            return web.Response(body=generation.whole(request_id), content_type="application/json")
        token, final, tail = generation.events(request_id)
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time() + settings.latency_ms / 1000
        interval = 1 / settings.token_rate if settings.token_rate > 0 else 0.0
        for index in range(generation.tokens):
            delay = start + index * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await response.write(token)
        await response.write(final + tail)
        await response.write_eof()
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": settings.model, "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", generate)
    app.router.add_post("/v1/completions", generate)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--token-rate", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--model", default="mock-model")
    args = parser.parse_args(argv)
    settings = MockSettings(args.latency_ms, args.token_rate, args.tokens, args.model)
    uvloop.install()
    web.run_app(build_app(settings), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
