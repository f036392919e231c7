"""Forward one validated request to its engine and relay the answer: JSON as a whole, SSE event by event.

Everything the client must not see from the engine is normalised here: engine errors are re-shaped into
OpenAI's error body, the usage chunk the gateway asked for on the client's behalf is dropped again, and a
connection failure before the first byte becomes a retryable 503.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.api.asgi import Send, send_bytes, send_error
from modelyard.errors import APIError, engine_unavailable, upstream_failed
from modelyard.gateway import sse
from modelyard.gateway.catalog import ServedModel
from modelyard.gateway.upstream_client import UpstreamClient, UpstreamResponse
from modelyard.observability.body_policy import MAX_BODY_BYTES
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_record import RequestRecord
from modelyard.security.guardrails.filters import OutputGuard

log = logging.getLogger("modelyard.gateway")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


@dataclass(frozen=True)
class ProxyCall:
    """Everything about one request that forwarding needs."""

    served: ServedModel
    endpoint: str  # "chat" | "completions" | "embeddings"
    path: str  # upstream path, e.g. /v1/chat/completions
    payload: dict[str, Any]
    body: bytes | None  # the client's body, when it can be forwarded as is (saves re-encoding the payload)
    stream: bool
    client_wants_usage: bool
    record: RequestRecord
    response_headers: list[tuple[bytes, bytes]]
    output_guard: OutputGuard | None = None  # the route's output guardrails (security/guardrails/filters.py)


class Proxy:
    """Relays requests over one pooled session, which the runtime opens inside the serving event loop."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.session: UpstreamClient | None = None
        self._metrics = metrics

    async def forward(self, send: Send, call: ProxyCall) -> int:
        assert self.session is not None, "Proxy used before Runtime.start() opened its session"
        url = call.served.upstream.base_url + call.path
        body = call.body if call.body is not None else orjson.dumps(call.payload)
        record = call.record
        record.dispatched = time.perf_counter()
        record.attempts = 1
        try:
            response = await self.session.post(url, body)
        except OSError as exc:
            upstream = call.served.upstream
            error = engine_unavailable(call.served.key, upstream.retry_after_s(), f"connection failed: {exc}")
            return await _fail(send, call, error)
        if response.attempts > 1:
            record.attempts = response.attempts
            self._metrics.upstream_retries.inc(response.attempts - 1)
        try:
            if response.status != 200:
                status = await self._relay_error(send, call, response)
            elif call.stream:
                status = await self._relay_stream(send, call, response)
            else:
                status = await self._relay_json(send, call, response)
        except BaseException:
            response.close()  # drop the engine connection: the engine then stops generating for this request
            raise
        response.release()
        return status

    async def _relay_json(self, send: Send, call: ProxyCall, response: UpstreamResponse) -> int:
        try:
            raw = await response.read()
        except OSError as exc:
            upstream = call.served.upstream
            reason = f"engine dropped the response: {exc}"
            return await _fail(send, call, engine_unavailable(call.served.key, upstream.retry_after_s(), reason))
        usage = sse.usage_of_body(raw)
        if usage:
            _record_usage(call, usage.prompt_tokens, usage.completion_tokens)
        if call.output_guard is not None:
            try:
                raw = call.output_guard.json_body(raw)
            except APIError as error:
                return await _fail(send, call, error)
        if call.record.response_body is not None:
            call.record.response_body = raw
        await send_bytes(send, 200, raw, call.response_headers)
        return 200

    async def _relay_stream(self, send: Send, call: ProxyCall, response: UpstreamResponse) -> int:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + call.response_headers})
        splitter = sse.EventSplitter()
        record = call.record
        status = 200
        try:
            async for data in response.iter_any():
                out = []
                for event in splitter.feed(data):
                    if sse.carries_token(event):
                        record.last_token = time.perf_counter()
                        if record.first_token is None:
                            record.first_token = record.last_token
                    usage = sse.usage_of_event(event)
                    if usage is not None:
                        _record_usage(call, usage.prompt_tokens, usage.completion_tokens)
                        if not call.client_wants_usage and sse.is_usage_only(event):
                            continue
                    if call.output_guard is None:
                        out.append(event)
                    else:
                        out.extend(call.output_guard.event(event))
                if call.output_guard is not None and call.output_guard.blocked:
                    record.error_type = "output_blocked"
                    if out:
                        await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                    break  # stop reading: release() then closes the engine connection, which stops generating
                if out:
                    chunk = b"".join(out)
                    if record.response_body is not None and len(record.response_body) <= MAX_BODY_BYTES:
                        record.response_body += chunk
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError as exc:
            # Once bytes have reached the client a retry would duplicate output: report and end the stream.
            log.warning("engine stream for %s broke: %s", call.served.key, exc)
            status = 502
            record.error_type = "upstream_stream_broken"
            await send(
                {
                    "type": "http.response.body",
                    "body": sse.error_event(f"The engine serving '{call.served.key}' stopped mid-stream: {exc}"),
                    "more_body": True,
                }
            )
        tail = splitter.remainder()
        if call.output_guard is not None:
            tail = b"" if call.output_guard.blocked else b"".join(call.output_guard.finish()) + tail
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return status

    async def _relay_error(self, send: Send, call: ProxyCall, response: UpstreamResponse) -> int:
        try:
            raw = await response.read()
        except OSError:
            raw = b""
        return await _fail(send, call, _engine_error(call.served.key, response.status, raw))


async def _fail(send: Send, call: ProxyCall, error: APIError) -> int:
    call.record.error_type = error.code or error.type
    await send_error(send, error, call.response_headers)
    return error.status


def _record_usage(call: ProxyCall, prompt_tokens: int, completion_tokens: int) -> None:
    record = call.record
    record.prompt_tokens, record.completion_tokens = prompt_tokens, completion_tokens
    served = call.served
    cost_per_1k = prompt_tokens * served.price_input_per_1k + completion_tokens * served.price_output_per_1k
    record.cost_usd = cost_per_1k / 1000


def _engine_error(model: str, status: int, raw: bytes) -> APIError:
    """Engines report errors in slightly different shapes (llama-server uses an integer ``code``)."""
    message, type_ = raw.decode(errors="replace")[:500] or f"HTTP {status}", None
    try:
        payload = orjson.loads(raw)
        detail = payload.get("error", payload) if isinstance(payload, dict) else {}
        if isinstance(detail, dict):
            message = str(detail.get("message", message))
            type_ = detail.get("type")
    except orjson.JSONDecodeError:
        pass
    if status == 503:
        return engine_unavailable(model, 2, message)
    if status >= 500 and status != 501:
        return upstream_failed(model, message)
    code = "not_supported" if type_ == "not_supported_error" else "engine_rejected_request"
    return APIError(status if status != 501 else 400, message, type="invalid_request_error", code=code)
