"""``/v1/responses``: the Responses API mapped onto the chat path (``gateway/responses_shape.py`` translates).

Each create runs one chat request through the pipeline under the endpoint name ``responses`` (so routing, the
caller's key and limits, guardrails, metrics and the request log apply unchanged), then answers with a Response
object or its typed stream, and stores it for the caller's key unless ``store`` is false. The store is written
after the client has its answer, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from modelyard import sse
from modelyard.asgi import Message, Request, send_bytes, send_json
from modelyard.errors import invalid_value, not_available_here
from modelyard.gateway.inner import Captured, inner_request
from modelyard.gateway.parse import RESPONSES
from modelyard.gateway.pipeline import Pipeline
from modelyard.gateway.relay import SSE_HEADERS
from modelyard.gateway.responses_shape import (
    ResponseEvents,
    assistant_message,
    chat_request,
    from_chat_answer,
    new_id,
)
from modelyard.jsonbody import decode_object
from modelyard.responses.store import ResponseStore

log = logging.getLogger("modelyard.gateway")

Persist = Callable[[dict[str, Any]], Awaitable[None]]


def key_of(request: Request) -> str:
    """The id of the caller's key, which owns what it stores ("" when auth is off)."""
    return str(getattr(request.caller, "id", "") or "")


class ResponsesAPI:
    def __init__(self, pipeline: Pipeline, store: ResponseStore | None, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._store = store
        self._max_body_bytes = max_body_bytes

    async def create(self, request: Request) -> None:
        body = decode_object(await request.body(self._max_body_bytes))
        history: list[Any] = []
        previous = body.get("previous_response_id")
        if previous is not None:
            if not isinstance(previous, str):
                raise invalid_value("previous_response_id must be a string.", "previous_response_id")
            history = (await asyncio.to_thread(self._need_store().get, key_of(request), previous)).conversation
        chat = chat_request(body, history)
        response_id = new_id("resp")
        chat_body = orjson.dumps(chat)
        conversation = [m for m in chat["messages"] if m["role"] != "system" or not body.get("instructions")]

        async def persist(final: dict[str, Any]) -> None:
            """Stored before the answer's last bytes go out, so a follow-up can name it at once."""
            if body.get("store") is not False and self._store is not None:
                await self._save(key_of(request), final, [*conversation, assistant_message(final)])

        if chat["stream"]:
            await self._stream(request, body, response_id, chat_body, persist)
        else:
            await self._whole(request, body, response_id, chat_body, persist)

    async def get(self, request: Request) -> tuple[int, Any]:
        stored = await asyncio.to_thread(self._need_store().get, key_of(request), request.params["id"])
        return 200, stored.body

    async def delete(self, request: Request) -> tuple[int, Any]:
        response_id = request.params["id"]
        await asyncio.to_thread(self._need_store().delete, key_of(request), response_id)
        return 200, {"id": response_id, "object": "response", "deleted": True}

    # -- internals ------------------------------------------------------------------------------------------------

    async def _whole(
        self, request: Request, body: dict[str, Any], response_id: str, chat: bytes, persist: Persist
    ) -> None:
        captured = Captured()
        await self._pipeline(inner_request(request.scope, request.caller, chat, captured, request.receive), RESPONSES)
        passed = [(k, v) for k, v in captured.headers if k.startswith(b"x-")]
        if captured.status != 200:
            await send_bytes(request.send, captured.status, captured.body, passed)
            return
        final = from_chat_answer(body, response_id, orjson.loads(captured.body))
        await persist(final)
        await send_json(request.send, 200, final, passed)

    async def _stream(
        self, request: Request, body: dict[str, Any], response_id: str, chat: bytes, persist: Persist
    ) -> None:
        events = ResponseEvents(body, response_id)
        splitter = sse.EventSplitter()
        state = {"status": 0}
        send = request.send

        async def translate(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                if message["status"] != 200:
                    await send(message)
                    return
                passed = [(k, v) for k, v in message.get("headers", []) if k.startswith(b"x-")]
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + passed})
                await send({"type": "http.response.body", "body": b"".join(events.start()), "more_body": True})
                return
            if state["status"] != 200:
                await send(message)
                return
            out: list[bytes] = []
            for event in splitter.feed(message.get("body", b"")):
                out.extend(_translate_event(events, event))
            more = message.get("more_body", False)
            if not more and events.final is None:
                out.extend(events.finish())
            if not more and events.final is not None:
                await persist(events.final)
            await send({"type": "http.response.body", "body": b"".join(out), "more_body": more})

        await self._pipeline(inner_request(request.scope, request.caller, chat, translate, request.receive), RESPONSES)

    def _need_store(self) -> ResponseStore:
        if self._store is None:
            raise not_available_here("Stored responses (previous_response_id, GET and DELETE /v1/responses/{id})")
        return self._store

    async def _save(self, key_id: str, final: dict[str, Any], conversation: list[Any]) -> None:
        assert self._store is not None
        try:
            await asyncio.to_thread(self._store.save, key_id, final, conversation)
        except Exception:  # the client still gets its answer; it just cannot be named later
            log.exception("storing response %s failed", final["id"])


def _translate_event(events: ResponseEvents, event: bytes) -> list[bytes]:
    if not event.startswith(b"data: "):
        return []
    data = event[6:].strip()
    if data == b"[DONE]":
        return events.finish() if events.final is None else []
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return []
    if isinstance(chunk, dict) and "error" in chunk:
        error = {"type": "error", **(chunk["error"] if isinstance(chunk["error"], dict) else {"message": chunk})}
        return [b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"]
    return events.chunk(chunk) if isinstance(chunk, dict) else []
