"""The OpenAI-compatible inference endpoints as raw ASGI callables.

Order of work for every request: read the body (bounded), parse, validate, resolve the model from the catalog
snapshot, check the engine is ready, then hand over to the proxy while watching for the client going away.
Each step fails with its own OpenAI-shaped error, and every request is counted exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from modelyard.api.asgi import (
    CLIENT_CLOSED,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    run_until_disconnect,
    send_bytes,
    send_error,
)
from modelyard.errors import APIError, internal_error, model_not_found
from modelyard.gateway.catalog import ModelCatalog, Route
from modelyard.gateway.decide import RouteDecider, RouteDecision
from modelyard.gateway.proxy import Proxy, ProxyCall
from modelyard.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    decode_object,
    validate,
)
from modelyard.gateway.shadow import Mirror, ShadowMirror
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.observers import RequestObservers
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.tracing import parse_traceparent
from modelyard.security.layer import Admission, SecurityLayer

log = logging.getLogger("modelyard.gateway")


@dataclass(frozen=True)
class Endpoint:
    name: str
    upstream_path: str
    schema: type[msgspec.Struct]
    streams: bool


CHAT = Endpoint("chat", "/v1/chat/completions", ChatCompletionRequest, streams=True)
COMPLETIONS = Endpoint("completions", "/v1/completions", CompletionRequest, streams=True)
EMBEDDINGS = Endpoint("embeddings", "/v1/embeddings", EmbeddingRequest, streams=False)


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 4 * 1024 * 1024


class InferenceHandlers:
    def __init__(
        self,
        catalog: Callable[[], ModelCatalog],
        proxy: Proxy,
        metrics: GatewayMetrics,
        limits: RequestLimits,
        observers: RequestObservers,
        decider: RouteDecider,
        shadow: ShadowMirror,
        security: SecurityLayer | None = None,
    ) -> None:
        self._decider = decider
        self._shadow = shadow
        self._catalog = catalog
        self._proxy = proxy
        self._metrics = metrics
        self._limits = limits
        self._observers = observers
        self._security = security

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handle(scope, receive, send, CHAT)

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handle(scope, receive, send, COMPLETIONS)

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handle(scope, receive, send, EMBEDDINGS)

    async def list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, self._catalog().list_body)

    async def get_model(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        catalog = self._catalog()
        body = catalog.get_body(name)
        if body is None:
            await send_error(send, model_not_found(name, catalog.ids, catalog.explain(name)))
            return
        await send_bytes(send, 200, body)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint) -> None:
        request_id = (header(scope, b"x-request-id") or os.urandom(12).hex().encode())[:128]
        trace_id, parent_span_id = parse_traceparent(header(scope, b"traceparent"))
        record = RequestRecord(
            request_id=request_id.decode(errors="replace"),
            trace_id=trace_id,
            parent_span_id=parent_span_id,
            endpoint=endpoint.name,
            received=time.perf_counter(),
            received_at=time.time(),
        )
        response_headers = [(b"x-request-id", request_id), (b"x-modelyard-trace-id", record.trace_id.encode())]
        status = 500
        keep_bodies = False
        mirror: Mirror | None = None
        admission: Admission | None = None
        self._metrics.in_flight += 1
        try:
            body = await read_body(receive, scope, self._limits.max_body_bytes)
            payload = decode_object(body)
            request = validate(payload, endpoint.schema)
            catalog = self._catalog()
            route = catalog.resolve(request.model)
            if route is None:
                raise model_not_found(request.model, catalog.ids, catalog.explain(request.model))
            record.route = request.model
            response_headers.append((b"x-modelyard-route", route.name.encode()))
            decision = self._decider.decide(route, scope, payload, response_headers)
            record.routed = time.perf_counter()
            primary = route.targets[decision.order[0]]
            record.model, record.target = primary.served.name, primary.name
            record.version = "" if primary.served.version is None else str(primary.served.version)
            if endpoint is EMBEDDINGS and not primary.served.embeddings:
                raise APIError(
                    404,
                    f"Embeddings are not supported by this deployment of '{primary.served.name}'. Serve an "
                    "embedding model (modelyard serve --embeddings) to enable /v1/embeddings.",
                    code="unsupported_endpoint",
                )
            if self._security is not None:  # keys, limits, budgets, guardrails: docs/security.md
                admission = await self._security.admit(
                    scope,
                    payload,
                    request.model,
                    primary.served.name,
                    record.request_id,
                    response_headers,
                    primary.region,
                )
            keep_bodies = self._observers.keep_bodies(request.model, record.request_id)
            shadowed = route.policy.shadow is not None and self._shadow.wanted(route, decision.order[0])
            if keep_bodies or shadowed:
                record.request_body, record.response_body = body, b""
            call = _proxy_call(endpoint, route, decision, body, payload, request, record, response_headers)
            if admission is not None:
                call.output_guard = admission.output
                if admission.payload_changed:  # redacted in place: encode the payload, log the redacted prompt
                    call.body = None
                    if record.request_body is not None:
                        record.request_body = orjson.dumps(payload)
            if shadowed:
                mirror = self._shadow.mirror(route, call)
            status = await run_until_disconnect(receive, send, lambda s: self._proxy.forward(s, call))
        except APIError as error:
            status = error.status
            record.error_type = error.code or error.type
            await send_error(send, error, response_headers)
        except ClientDisconnected:
            status = CLIENT_CLOSED
            record.error_type = "client_closed"
        except Exception:
            # A bug, not a client or engine problem: still answer in OpenAI's shape if nothing was sent yet.
            log.exception("unhandled error in %s request %s", endpoint.name, record.request_id)
            status = 500
            record.error_type = "internal_error"
            with contextlib.suppress(Exception):
                await send_error(send, internal_error(record.request_id), response_headers)
        finally:
            if mirror is not None:
                mirror.primary_finished(record, status)
            if not keep_bodies:
                record.request_body = record.response_body = None
            self._metrics.in_flight -= 1
            record.status = status
            if status == CLIENT_CLOSED and not record.error_type:
                record.error_type = "client_closed"
            record.finished = time.perf_counter()
            if admission is not None and self._security is not None:
                await self._security.settle(admission, record)
            self._observers(record)


def _proxy_call(
    endpoint: Endpoint,
    route: Route,
    decision: RouteDecision,
    body: bytes,
    payload: dict[str, Any],
    request: msgspec.Struct,
    record: RequestRecord,
    response_headers: list[tuple[bytes, bytes]],
) -> ProxyCall:
    stream = endpoint.streams and bool(getattr(request, "stream", False))
    record.stream = stream
    options = getattr(request, "stream_options", None)
    client_wants_usage = bool(options and options.include_usage)
    unchanged = True
    if stream and not client_wants_usage:
        # Ask the engine for the usage chunk so tokens can be counted; the proxy removes it again.
        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        unchanged = False
    return ProxyCall(
        route=route,
        order=decision.order,
        affinity_key=decision.affinity_key,
        fixed_headers=len(response_headers),
        endpoint=endpoint.name,
        path=endpoint.upstream_path,
        payload=payload,
        body=body if unchanged else None,
        stream=stream,
        client_wants_usage=client_wants_usage,
        record=record,
        response_headers=response_headers,
    )
