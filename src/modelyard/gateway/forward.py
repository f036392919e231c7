"""Stage 5, forward: send the request along its route — a replica of the primary target, on failure before the
first byte another replica, then the next target of the fallback chain — within the route's attempt budget and
deadline, and hand the answer that starts to the relay.

Nothing has reached the client while an attempt fails, so trying again is safe. A stream is committed once its
first piece has arrived; after that there is no silent retry. When every attempt failed (or no replica was usable)
the last failure is raised for the pipeline to answer with.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.asgi import Send
from modelyard.errors import APIError, engine_unavailable, queue_full
from modelyard.gateway.adapt import Adapter
from modelyard.gateway.exchange import Exchange
from modelyard.gateway.fanout import fan_out
from modelyard.gateway.hold import Hold, HoldFull, coming_back
from modelyard.gateway.parse import Parsed
from modelyard.gateway.relay import relay_json, relay_stream
from modelyard.gateway.shaper import AnswerShaper, Invalid
from modelyard.gateway.slots import FairGate, QueueFull, SlotGates, priority_of, retry_after
from modelyard.gateway.upstream_call import AttemptFailed, OpenCall, UpstreamCaller, engine_error
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.decide import RouteDecision
from modelyard.routing.model import Replica, Route, RouteTarget
from modelyard.routing.prefix import prompt_blocks
from modelyard.security.guardrails.filters import OutputGuard
from modelyard.security.layer import Admission


@dataclass(slots=True)
class Call:
    """Everything about one request that forwarding needs."""

    route: Route
    order: list[int]  # target indices: the primary, then the fallback chain
    alternates: tuple[int, ...]  # the split's other targets, tried when the whole order is down (decide.py)
    path: str  # upstream path, e.g. /v1/chat/completions
    payload: dict[str, Any]
    body: bytes | None  # the client's body, when it can be forwarded as is (saves re-encoding the payload)
    stream: bool
    client_wants_usage: bool
    affinity_key: str | None = None
    output_guard: OutputGuard | None = None  # the route's output guardrails (security/guardrails/filters.py)
    redacted: bool = False  # input guardrails changed the payload: what is sent (and logged) is the redacted one
    bodies: dict[str | None, bytes] | None = None  # encoded payload per upstream model name, made on first need
    adapter: Adapter | None = None  # tools, formats, logprobs, n, echo: rewritten per engine kind (adapt.py)
    n: int | None = None  # choices asked of the engine in this call (a part of a fan-out), else as the client said
    blocks: tuple[int, ...] | None = None  # the prompt's prefix block names, made on first need (prefix_cache)

    @classmethod
    def prepare(
        cls,
        parsed: Parsed,
        route: Route,
        decision: RouteDecision,
        admission: Admission | None,
        adapter: Adapter | None = None,
    ) -> Call:
        """With an admission: its output guard, and whether its input guardrails changed the payload in place (then
        the client's bytes cannot be sent as they are)."""
        redacted = admission is not None and admission.payload_changed
        guard = admission.output if admission is not None else None
        payload, unchanged = parsed.payload, not redacted
        if parsed.stream and not parsed.client_wants_usage:
            # Ask the engine for the usage chunk so tokens can be counted; the relay removes it again.
            payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
            unchanged = False
        call = cls(
            route=route,
            order=decision.order,
            alternates=decision.alternates,
            path=parsed.kind.upstream_path,
            payload=payload,
            body=parsed.body if unchanged else None,
            stream=parsed.stream,
            client_wants_usage=parsed.client_wants_usage,
            affinity_key=decision.affinity_key,
            output_guard=guard,
            redacted=redacted,
            adapter=adapter,
        )
        if adapter is not None:
            call.body = None  # rewritten per engine kind
        return call

    def body_for(self, target: RouteTarget) -> bytes:
        served = target.served
        upstream_model = served.upstream_model
        if upstream_model is None and not served.lora and self.body is not None:
            return self.body  # the common case: the client's bytes, no allocation
        if self.bodies is None:
            self.bodies = {}
        caps = served.capabilities
        key = upstream_model if self.adapter is None else f"{upstream_model}\0{caps.kind}"
        if served.lora:
            key = f"{key}\0{served.lora}"
        body = self.bodies.get(key)
        if body is None:
            payload = served.upstream_fields(self.payload)
            if self.adapter is not None:
                payload = self.adapter.payload_for(payload, caps, self.n)
            body = self.bodies[key] = orjson.dumps(payload)
        return body

    def prefix_blocks(self) -> tuple[int, ...]:
        """The prompt's prefix block names for ``prefix_cache`` balancing, computed once per request."""
        if self.blocks is None:
            self.blocks = prompt_blocks(self.payload)
        return self.blocks

    def shaper_for(self, target: RouteTarget, on_invalid: Invalid) -> AnswerShaper | None:
        if self.adapter is None:
            return None
        return AnswerShaper(self.adapter, target.served.capabilities, on_invalid)

    def part(self, n: int) -> Call:
        """This call asking the engine for ``n`` of the choices (one part of a fan-out)."""
        return dataclasses.replace(self, n=n, bodies=None)


class Forwarder:
    def __init__(
        self, upstreams: UpstreamCaller, routing: RoutingMetrics, on_invalid: Invalid, hold: Hold, slots: SlotGates
    ) -> None:
        """``on_invalid``: told each time an answer's tool calls or structured output did not validate;
        ``hold``: where requests wait for engines that are coming back; ``slots``: where requests wait for a
        busy replica's slots."""
        self._upstreams = upstreams
        self._routing = routing
        self._on_invalid = on_invalid
        self._hold = hold
        self._slots = slots

    async def __call__(self, send: Send, exchange: Exchange, call: Call) -> int:
        adapter = call.adapter
        if adapter is not None:
            parts = adapter.parts(call.route.targets[call.order[0]].served.capabilities)
            if parts > 1:
                return await fan_out(self.attempts, send, exchange, call, parts)
        return await self.attempts(send, exchange, call)

    async def attempts(self, send: Send, exchange: Exchange, call: Call) -> int:
        """The attempts along the chain; when they found no usable replica but some are coming back (engines
        restarting), the request is held until one is ready and the chain is tried again (``hold.py``)."""
        route = call.route
        policy = route.policy.retry
        state = _Attempts(
            policy.attempts, math.inf if policy.deadline_s is None else time.monotonic() + policy.deadline_s
        )
        exchange.forwarding(call.stream)
        while True:
            status = await self._chain(send, exchange, call, state)
            if status is not None:
                return status
            if _stand_in(call, state, policy.attempts, exchange.record.attempts):
                continue
            if policy.hold_s <= 0 or state.holds >= _MAX_HOLDS:
                break
            candidates = coming_back(r for i in call.order for r in route.targets[i].replicas)
            if not candidates and not state.suspects:
                break
            if not await self._held(exchange, call, state, candidates):
                break
        if state.last_error is None or state.expired or state.full:
            target = route.targets[call.order[0]]
            exchange.name_target(target)
            reason = target.missing or _unavailable_reason(target)
            if state.expired:
                reason = f"waited {policy.hold_s:g} s for it to come back; {reason}"
            elif state.full:
                reason = f"{policy.hold_max} requests already wait for it; {reason}"
            state.last_error = engine_unavailable(target.served.key, _retry_after(target), reason)
        raise state.last_error

    async def _held(self, exchange: Exchange, call: Call, state: _Attempts, candidates: list[Replica]) -> bool:
        """Wait for a replica to come back; True when the chain is worth another try."""
        route = call.route
        policy = route.policy.retry
        if state.hold_until is None:
            state.hold_until = time.monotonic() + policy.hold_s  # one deadline for all of the request's holds
        try:
            self._hold.enter(route)
        except HoldFull:
            state.full = True
            return False
        outcome = "gone"  # unless the wait ends: the client left (the wait was cancelled)
        try:
            back = await self._hold.until_usable(candidates, state.suspects, min(state.hold_until, state.deadline))
            outcome = "served" if back else "expired"
        finally:
            self._hold.leave(route, outcome)
        if not back:
            state.expired = True
            return False
        state.holds += 1
        state.tried.clear()
        state.suspects = []
        state.budget = exchange.record.attempts + policy.attempts  # a fresh budget for the engines that came back
        return True

    async def _chain(self, send: Send, exchange: Exchange, call: Call, state: _Attempts) -> int | None:
        """One pass over the chain: the answer's status, or None when every attempt failed (or none could be
        made); nothing has been sent to the client then."""
        route = call.route
        policy = route.policy.retry
        deadline = state.deadline
        tried = state.tried
        for target_index in call.order:
            target = route.targets[target_index]
            while exchange.record.attempts < state.budget and time.monotonic() < deadline:
                balancing = route.policy.balancing
                blocks = call.prefix_blocks() if balancing == "prefix_cache" and len(target.replicas) > 1 else None
                replica = self._upstreams.pick(target, balancing, tried, call.affinity_key, blocks)
                if replica is None:
                    break
                tried.add(id(replica))
                if exchange.record.attempts:
                    self._routing.retried(route.name, target.name)
                previous = state.previous
                if previous is not target and target_index != call.order[0]:
                    # down the chain: after failed attempts, or because the chosen target had no usable replica
                    origin = previous or route.targets[call.order[0]]
                    self._routing.fell_back(route.name, origin.name, target.name)
                state.previous = target
                exchange.attempt(target)
                timeout = deadline - time.monotonic()
                if policy.first_byte_timeout_s is not None:
                    timeout = min(timeout, policy.first_byte_timeout_s)
                gate = self._slots.gate(replica.name, replica.max_concurrency)
                if gate is not None and not gate.try_enter():
                    await self._queue(gate, exchange, route, target, replica)
                try:
                    try:
                        opened = await self._upstreams.open(
                            target,
                            replica,
                            call.path,
                            call.body_for(target),
                            call.stream,
                            None if timeout == math.inf else timeout,
                            policy.on_status,
                            route.policy.breaker,
                        )
                    except AttemptFailed as failure:
                        state.last_error = failure.error
                        if failure.broken and replica.upstream.generation:
                            state.suspects.append((replica, failure.generation))
                        continue
                    return await self._relay(send, exchange, call, target, opened)
                finally:
                    if gate is not None:
                        gate.leave()
        return None

    async def _queue(
        self, gate: FairGate, exchange: Exchange, route: Route, target: RouteTarget, replica: Replica
    ) -> None:
        """Wait for one of the replica's slots, fairly between keys and by priority class (``slots.py``)."""
        grant = exchange.grant
        priority = priority_of(exchange.priority_asked, grant.limits.priority if grant is not None else "")
        key = grant.id if grant is not None else ""
        version = str(target.served.version or "")
        hint = retry_after(gate.waiting, gate.limit, replica.latency_ewma_s)
        started = time.monotonic()
        self._routing.queue_entered(route.name, version)
        try:
            await gate.enter(key, priority, hint)
        except QueueFull as full:
            self._routing.queue_full(route.name, version)
            exchange.name_target(target)
            raise queue_full(target.served.key, full.waiting, full.retry_after_s) from None
        finally:
            self._routing.queue_left(route.name, version, time.monotonic() - started)

    async def _relay(self, send: Send, exchange: Exchange, call: Call, target: RouteTarget, opened: OpenCall) -> int:
        served = target.served
        if opened.status != 200:  # an error answer the route does not retry: passed on in our words
            opened.release()
            raise engine_error(served.key, opened.status, opened.first)
        shaper = call.shaper_for(target, self._on_invalid)
        try:
            if call.stream:
                status = await relay_stream(
                    send, exchange, opened, served, call.client_wants_usage, call.output_guard, shaper
                )
            else:
                status = await relay_json(send, exchange, opened.first, served, call.output_guard, shaper)
        except BaseException:
            opened.close()  # drop the engine connection: the engine then stops generating for this request
            raise
        opened.release()
        return status


def _stand_in(call: Call, state: _Attempts, attempts: int, made: int) -> bool:
    """When the request's whole chain is down (its engine died under it, say), the split's heaviest other target
    that is up takes it, with a fresh attempt budget, before any hold: a canary whose candidate crashed loses
    nothing while the stable version serves. True when a target was added to the order.

    Only *down*: every replica of the chain unusable or broken under this request. A candidate that answers
    errors is still up, and its client gets the error: moving those requests to the stable target would hide a
    bad canary from the analysis that judges it."""
    if not call.alternates or time.monotonic() >= state.deadline:
        return False
    broken = {id(replica) for replica, _ in state.suspects}
    targets = call.route.targets
    if any(r.usable and id(r) not in broken for i in call.order for r in targets[i].replicas):
        return False
    for index in call.alternates:
        if index not in call.order and targets[index].available:
            call.order = [*call.order, index]  # a new list: a decision's order may be shared
            state.budget = made + attempts
            return True
    return False


_MAX_HOLDS = 4  # holds per request: a request that kills its engine each time is not retried forever


class _Attempts:
    """What one request's attempts have learnt so far, across holds (a plain slotted class: made per request)."""

    __slots__ = (
        "budget",
        "deadline",
        "expired",
        "full",
        "hold_until",
        "holds",
        "last_error",
        "previous",
        "suspects",
        "tried",
    )

    def __init__(self, budget: int, deadline: float) -> None:
        self.budget = budget  # attempts allowed in total until now (the route's, renewed after each hold)
        self.deadline = deadline  # monotonic: the route's deadline for all attempts
        self.tried: set[int] = set()  # ids of the replicas tried since the last hold
        self.suspects: list[tuple[Replica, int]] = []  # broken connections: (replica, its generation then)
        self.last_error: APIError | None = None
        self.previous: RouteTarget | None = None
        self.holds = 0
        self.hold_until: float | None = None
        self.expired = False  # held until the route's hold_s without a replica coming back
        self.full = False  # the route's hold was full


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
