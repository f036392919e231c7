"""Shadow traffic: a copy of a request goes to the route's shadow target, off the request's path.

The copy is sent as a whole (non-streaming) request once the primary is on its way; its answer is never
returned. It never slows or fails the primary: it runs in its own task, with its own timeout, and a route
never has more than ``max_concurrent`` copies in flight (beyond that a copy is skipped and counted). When both
answers are in, they are compared (routing/compare.py): the comparison goes to metrics, and the shadow's
record — latency, tokens, status, whether the outputs match, both outputs when bodies are kept — goes to the
request log next to the primary's row, linked by ``shadow_of``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import orjson

from modelyard import sse
from modelyard.gateway.forward import Call
from modelyard.gateway.upstream_call import AttemptFailed, UpstreamCaller
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.compare import Answer, answer_text, compare
from modelyard.routing.model import Route, RouteTarget

log = logging.getLogger("modelyard.shadow")


class Mirror:
    """The link between one primary request and its shadow copy: the primary's outcome, once known."""

    def __init__(self) -> None:
        self.done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

    def primary_finished(self, record: RequestRecord, status: int) -> None:
        if self.done.done():
            return
        latency = (record.finished or time.perf_counter()) - record.received
        text = answer_text(record.response_body or b"", record.stream) if status == 200 else ""
        self.done.set_result(Answer(status, text, record.completion_tokens, latency))


class ShadowMirror:
    def __init__(
        self,
        upstreams: UpstreamCaller,
        metrics: RoutingMetrics,
        record_shadow: Callable[[RequestRecord], None],
        uniform: Callable[[], float],
    ) -> None:
        self._upstreams = upstreams
        self._metrics = metrics
        self._record_shadow = record_shadow
        self._uniform = uniform
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def wanted(self, route: Route, primary: int) -> bool:
        shadow = route.policy.shadow
        if shadow is None or shadow.target == primary:
            return False
        return shadow.sample >= 1.0 or self._uniform() < shadow.sample

    def mirror(self, route: Route, call: Call, primary: RequestRecord) -> Mirror | None:
        shadow = route.policy.shadow
        assert shadow is not None
        target = route.targets[shadow.target]
        if self._in_flight.get(route.name, 0) >= shadow.max_concurrent:
            self._metrics.shadow_outcome(route.name, target.name, "skipped")
            return None
        payload = target.served.upstream_fields(
            {k: v for k, v in call.payload.items() if k not in ("stream", "stream_options")}
        )
        mirror = Mirror()
        self._in_flight[route.name] = self._in_flight.get(route.name, 0) + 1
        task = asyncio.create_task(
            self._run(route, target, call.path, primary, orjson.dumps(payload), mirror, shadow.timeout_s)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return mirror

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(
        self,
        route: Route,
        target: RouteTarget,
        path: str,
        primary: RequestRecord,
        body: bytes,
        mirror: Mirror,
        timeout_s: float,
    ) -> None:
        record = RequestRecord(
            request_id=f"{primary.request_id}.shadow",
            trace_id=primary.trace_id,
            endpoint=primary.endpoint,
            received=time.perf_counter(),
            received_at=primary.received_at,
            route=route.name,
            model=target.served.name,
            version="" if target.served.version is None else str(target.served.version),
            target=target.name,
            shadow_of=primary.request_id,
            attempts=1,
        )
        if primary.request_body is not None:
            record.request_body = primary.request_body
        try:
            shadow = await self._call(route, target, path, body, record, timeout_s)
            outcome = "ok" if shadow.status == 200 else "error"
        except TimeoutError:
            shadow, outcome = Answer(504, "", 0, timeout_s), "timeout"
            record.error_type = "shadow_timeout"
        except Exception as exc:  # a failing shadow is a finding, never a problem for the primary
            shadow, outcome = Answer(502, "", 0, time.perf_counter() - record.received), "error"
            record.error_type = "shadow_failed"
            log.debug("shadow call to %s failed: %s", target.name, exc)
        finally:
            self._in_flight[route.name] -= 1
        record.status = shadow.status
        record.finished = record.received + shadow.latency_s
        self._metrics.shadow_outcome(route.name, target.name, outcome)
        try:
            answer = await asyncio.wait_for(asyncio.shield(mirror.done), timeout_s)
        except TimeoutError:
            answer = None
        if answer is not None and answer.status == 200 and shadow.status == 200:
            result = compare(answer, shadow)
            record.outputs_match, record.similarity = result.exact_match, result.similarity
            self._metrics.shadow_compared(
                route.name, target.name, result.exact_match, result.similarity, answer.latency_s, shadow.latency_s
            )
        with contextlib.suppress(Exception):
            self._record_shadow(record)

    async def _call(
        self, route: Route, target: RouteTarget, path: str, body: bytes, record: RequestRecord, timeout_s: float
    ) -> Answer:
        """One whole (non-streamed) call through the same path as every upstream call: the replica's in-flight
        count, latency average and breaker see shadow traffic like any other."""
        replica = self._upstreams.pick(target, "least_outstanding")
        if replica is None:
            raise ConnectionError(f"shadow target {target.name} has no usable replica")
        started = time.perf_counter()
        try:
            opened = await self._upstreams.open(
                target, replica, path, body, False, timeout_s, frozenset(), route.policy.breaker
            )
        except AttemptFailed as failure:
            if failure.timed_out:
                raise TimeoutError from None
            raise ConnectionError(failure.error.message) from None
        opened.release()
        latency = time.perf_counter() - started
        raw = opened.first
        usage = sse.usage_of_body(raw) if opened.status == 200 else None
        if usage:
            record.prompt_tokens, record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        if record.request_body is not None:
            record.response_body = raw
        return Answer(opened.status, answer_text(raw, False), record.completion_tokens, latency)
