"""Forward one validated request along its route: pick a replica, call it, and on failure before the first byte
try another replica, then the next target of the fallback chain, within the route's attempt budget and deadline.

An attempt fails when the upstream cannot be reached, breaks its connection, answers with a retryable 5xx, or
does not answer within ``first_byte_timeout_s``. Nothing has reached the client then, so trying again is safe.
A stream is committed once its first piece has arrived; after that there is no silent retry. Failures feed the
replica's circuit breaker (routing/breaker.py); an ejected replica gets no attempts until a probe re-admits it.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.api.asgi import Send
from modelyard.errors import APIError, engine_unavailable
from modelyard.gateway.catalog import Replica, Route, RouteTarget
from modelyard.gateway.relay import engine_error, relay_json, relay_stream, send_failure
from modelyard.gateway.upstream_client import UpstreamClient, UpstreamResponse
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.balancing import ReplicaView, pick_replica, updated_ewma
from modelyard.routing.breaker import after_failure, after_success
from modelyard.security.guardrails.filters import OutputGuard


@dataclass
class ProxyCall:
    """Everything about one request that forwarding needs."""

    route: Route
    order: list[int]  # target indices: the primary, then the fallback chain
    endpoint: str  # "chat" | "completions" | "embeddings"
    path: str  # upstream path, e.g. /v1/chat/completions
    payload: dict[str, Any]
    body: bytes | None  # the client's body, when it can be forwarded as is (saves re-encoding the payload)
    stream: bool
    client_wants_usage: bool
    record: RequestRecord
    response_headers: list[tuple[bytes, bytes]]
    affinity_key: str | None = None
    output_guard: OutputGuard | None = None  # the route's output guardrails (security/guardrails/filters.py)
    fixed_headers: int = 0  # response headers before the per-target ones (which change when a retry moves on)
    bodies: dict[str | None, bytes] | None = None  # encoded payload per upstream model name, made on first need

    def body_for(self, target: RouteTarget) -> bytes:
        upstream_model = target.served.upstream_model
        if upstream_model is None and self.body is not None:
            return self.body  # the common case: the client's bytes, no allocation
        if self.bodies is None:
            self.bodies = {}
        body = self.bodies.get(upstream_model)
        if body is None:
            payload = self.payload if upstream_model is None else {**self.payload, "model": upstream_model}
            body = self.bodies[upstream_model] = orjson.dumps(payload)
        return body


class _AttemptFailed(Exception):
    def __init__(self, error: APIError) -> None:
        self.error = error


class Proxy:
    """Relays requests over one pooled session, which the runtime opens inside the serving event loop."""

    def __init__(self, metrics: GatewayMetrics, routing: RoutingMetrics) -> None:
        self.session: UpstreamClient | None = None
        self._metrics = metrics
        self._routing = routing

    async def forward(self, send: Send, call: ProxyCall) -> int:
        assert self.session is not None, "Proxy used before Runtime.start() opened its session"
        route, record = call.route, call.record
        policy = route.policy.retry
        deadline = math.inf if policy.deadline_s is None else time.monotonic() + policy.deadline_s
        tried: set[int] = set()
        last_error: APIError | None = None
        previous: RouteTarget | None = None
        record.dispatched = time.perf_counter()
        for target_index in call.order:
            target = route.targets[target_index]
            while record.attempts < policy.attempts and time.monotonic() < deadline:
                replica = self._pick(route, target, tried, call.affinity_key)
                if replica is None:
                    break
                tried.add(id(replica))
                if record.attempts:
                    self._routing.retried(route.name, target.name)
                if previous is not target and target_index != call.order[0]:
                    # down the chain: after failed attempts, or because the chosen target had no usable replica
                    origin = previous or route.targets[call.order[0]]
                    self._routing.fell_back(route.name, origin.name, target.name)
                previous = target
                record.attempts += 1
                _name_target(call, target)
                try:
                    return await self._attempt(send, call, target, replica, deadline)
                except _AttemptFailed as failure:
                    last_error = failure.error
                    self._failed(route, target, replica)
        if last_error is None:
            target = route.targets[call.order[0]]
            _name_target(call, target)
            reason = target.missing or _unavailable_reason(target)
            last_error = engine_unavailable(target.served.key, _retry_after(target), reason)
        headers = [*call.response_headers, (b"x-modelyard-attempts", str(record.attempts).encode())]
        return await send_failure(send, record, last_error, headers)

    def _pick(self, route: Route, target: RouteTarget, tried: set[int], affinity_key: str | None) -> Replica | None:
        replicas = target.replicas
        if len(replicas) == 1:  # the common case (one engine per version): nothing to balance
            only = replicas[0]
            return only if only.usable and id(only) not in tried else None
        views = [
            ReplicaView(r.name, r.usable and id(r) not in tried, r.upstream.active_requests, r.latency_ewma_s)
            for r in replicas
        ]
        state = target.state
        state.turn += 1
        index = pick_replica(route.policy.balancing, views, state.turn, affinity_key)
        return None if index is None else replicas[index]

    async def _attempt(
        self, send: Send, call: ProxyCall, target: RouteTarget, replica: Replica, deadline: float
    ) -> int:
        """One upstream call. Raises :class:`_AttemptFailed` while nothing has been sent to the client."""
        assert self.session is not None
        policy = call.route.policy.retry
        upstream = replica.upstream
        served = target.served
        timeout: float | None = deadline - time.monotonic()
        if policy.first_byte_timeout_s is not None:
            timeout = min(timeout, policy.first_byte_timeout_s)
        if timeout == math.inf:
            timeout = None
        started = time.monotonic()
        upstream.active_requests += 1
        response: UpstreamResponse | None = None
        try:
            try:
                if timeout is None:  # no deadline: skip the timer (the common case for registry ids)
                    response, first = await self._open(call, target, replica)
                else:
                    async with asyncio.timeout(timeout):
                        response, first = await self._open(call, target, replica)
            except TimeoutError:
                reason = f"no answer within {timeout or 0:.1f} s"
                raise _AttemptFailed(engine_unavailable(served.key, upstream.retry_after_s(), reason)) from None
            except OSError as exc:
                reason = f"connection failed: {exc}"
                raise _AttemptFailed(engine_unavailable(served.key, upstream.retry_after_s(), reason)) from None
            replica.latency_ewma_s = updated_ewma(replica.latency_ewma_s, time.monotonic() - started)
            replica.breaker = after_success(replica.breaker)
            headers = [*call.response_headers, (b"x-modelyard-attempts", str(call.record.attempts).encode())]
            if response.status != 200:
                return await send_failure(send, call.record, engine_error(served.key, response.status, first), headers)
            if call.stream:
                return await relay_stream(
                    send, first, response, served, call.record, headers, call.client_wants_usage, call.output_guard
                )
            return await relay_json(send, first, served, call.record, headers, call.output_guard)
        except BaseException:
            if response is not None:
                response.close()  # drop the engine connection: the engine then stops generating for this request
                response = None
            raise
        finally:
            upstream.active_requests -= 1
            if response is not None:
                response.release()

    async def _open(self, call: ProxyCall, target: RouteTarget, replica: Replica) -> tuple[UpstreamResponse, bytes]:
        """Send the request and read up to the first piece of the answer (closing the connection on failure)."""
        assert self.session is not None
        body = call.body_for(target)
        response = await self.session.post(replica.upstream.base_url + call.path, body, replica.auth_header)
        if response.attempts > 1:
            self._metrics.upstream_retries.inc(response.attempts - 1)
        try:
            return response, await self._first_piece(call, target, response)
        except BaseException:
            response.close()
            raise

    async def _first_piece(self, call: ProxyCall, target: RouteTarget, response: UpstreamResponse) -> bytes:
        """The whole body of a JSON or error answer, or the first piece of a stream; a retryable status fails
        the attempt."""
        if response.status != 200:
            raw = await response.read()
            if response.status in call.route.policy.retry.on_status:
                raise _AttemptFailed(engine_error(target.served.key, response.status, raw))
            return raw
        if call.stream:
            return await response.next_chunk() or b""
        return await response.read()

    def _failed(self, route: Route, target: RouteTarget, replica: Replica) -> None:
        before = replica.breaker
        replica.breaker = after_failure(before, time.monotonic(), route.policy.breaker)
        replica.breaker_policy = route.policy.breaker
        if replica.breaker.ejected and not before.ejected:
            self._routing.ejected(target.name, replica.name)


def _name_target(call: ProxyCall, target: RouteTarget) -> None:
    """The record and the response headers name the target that is (finally) answering."""
    record, served = call.record, target.served
    record.model, record.target = served.name, target.name
    record.version = "" if served.version is None else str(served.version)
    headers = call.response_headers
    del headers[call.fixed_headers :]
    headers.extend(target.headers)


def _unavailable_reason(target: RouteTarget) -> str:
    if not target.replicas:
        return "no replicas"
    reasons = {
        r.upstream.unavailable_reason() if not r.upstream.ready else "ejected after repeated failures"
        for r in target.replicas
    }
    return "; ".join(sorted(reasons))


def _retry_after(target: RouteTarget) -> int:
    return min((r.upstream.retry_after_s() for r in target.replicas), default=5)
