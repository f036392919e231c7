"""One way to call an upstream, for every caller (the proxy's attempts and the shadow copies alike): pick a replica
of the target, count it in flight, post, read up to the first piece of the answer, update what balancing and
ejection learn about the replica (latency average, circuit breaker), and give the connection back.

A call *fails* — :class:`AttemptFailed`, with nothing sent to any client — when the upstream cannot be reached,
breaks its connection, does not answer within the timeout, or answers with a status the caller treats as
retryable. Failures feed the replica's circuit breaker (``routing/breaker.py``); an ejected replica gets no calls
until a probe re-admits it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson

from modelyard.errors import APIError, engine_rejected, engine_unavailable, upstream_failed
from modelyard.gateway.upstream_client import UpstreamClient, UpstreamResponse
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.balancing import ReplicaView, pick_replica, updated_ewma
from modelyard.routing.breaker import CLOSED, BreakerPolicy, after_failure, after_success
from modelyard.routing.model import Replica, RouteTarget
from modelyard.routing.prefix import PrefixIndex


class AttemptFailed(Exception):
    """``broken``: the connection failed or broke (the engine may have died: ``generation`` is the upstream's
    generation then, so a hold can tell the restarted process from the one that broke)."""

    def __init__(self, error: APIError, timed_out: bool = False, broken: bool = False, generation: int = 0) -> None:
        self.error = error
        self.timed_out = timed_out
        self.broken = broken
        self.generation = generation


class OpenCall:
    """A call whose answer has started: its status, the first piece (the whole body of a JSON or error answer),
    and the rest to read. ``release`` or ``close`` ends it exactly once."""

    __slots__ = ("_done", "first", "replica", "response", "status")

    def __init__(self, replica: Replica, response: UpstreamResponse, first: bytes) -> None:
        self.replica = replica
        self.response = response
        self.first = first
        self.status = response.status
        self._done = False

    async def next_chunk(self) -> bytes | None:
        return await self.response.next_chunk()

    def release(self) -> None:
        """Give the connection back (closed instead, if the answer was not read to its end)."""
        if not self._done:
            self._done = True
            self.replica.upstream.active_requests -= 1
            self.response.release()

    def close(self) -> None:
        """Drop the connection: the engine sees the client go away and stops generating for this request."""
        if not self._done:
            self._done = True
            self.replica.upstream.active_requests -= 1
            self.response.close()


class UpstreamCaller:
    """Owns the pooled upstream client of one gateway process (opened by the runtime inside the serving loop)."""

    def __init__(self, metrics: GatewayMetrics, routing: RoutingMetrics) -> None:
        self.session: UpstreamClient | None = None
        self._metrics = metrics
        self._routing = routing

    def pick(
        self,
        target: RouteTarget,
        balancing: str,
        tried: set[int] | None = None,
        affinity_key: str | None = None,
        blocks: Sequence[int] | None = None,
    ) -> Replica | None:
        """A usable replica of ``target`` not in ``tried`` (ids), by the route's balancing policy. ``blocks``: the
        prompt's prefix block names, for ``prefix_cache`` balancing (``routing/prefix.py``); the chosen replica is
        then remembered as holding them."""
        replicas = target.replicas
        if len(replicas) == 1:  # the common case (one engine per version): nothing to balance
            only = replicas[0]
            return only if only.usable and (tried is None or id(only) not in tried) else None
        views = [
            ReplicaView(
                r.name, r.usable and not (tried and id(r) in tried), r.upstream.active_requests, r.latency_ewma_s
            )
            for r in replicas
        ]
        state = target.state
        state.turn += 1
        if blocks is None:
            index = pick_replica(balancing, views, state.turn, affinity_key)
            return None if index is None else replicas[index]
        prefixes = state.prefixes
        if prefixes is None:
            prefixes = state.prefixes = PrefixIndex()
        index = pick_replica(balancing, views, state.turn, depths=prefixes.depths(blocks, len(replicas)))
        if index is None:
            return None
        prefixes.record(blocks, index)
        return replicas[index]

    async def open(
        self,
        target: RouteTarget,
        replica: Replica,
        path: str,
        body: bytes,
        stream: bool,
        timeout: float | None,  # noqa: ASYNC109 - a per-attempt budget computed by the caller, not a user knob
        retry_on: frozenset[int],
        breaker: BreakerPolicy,
    ) -> OpenCall:
        """Post ``body`` and read up to the first piece of the answer within ``timeout`` (None: no limit).

        Raises :class:`AttemptFailed` on a connection failure, a timeout, or a status in ``retry_on``; the replica's
        breaker counts the failure and its in-flight count is back where it was."""
        assert self.session is not None, "UpstreamCaller used before the runtime opened its session"
        upstream = replica.upstream
        served = target.served
        started = time.monotonic()
        generation = upstream.generation
        upstream.active_requests += 1
        try:
            if timeout is None:  # no deadline: skip the timer (the common case for registry ids)
                response, first = await self._exchange(replica, path, body, stream)
            else:
                async with asyncio.timeout(timeout):
                    response, first = await self._exchange(replica, path, body, stream)
            status = response.status
            if (
                status != 200
                and status in retry_on
                and not (status == 500 and not target.remote and request_fault(first))
            ):
                response.close()
                raise AttemptFailed(engine_error(served.key, status, first))
        except TimeoutError:
            self._failed(target, replica, breaker)
            reason = f"no answer within {timeout or 0:.1f} s"
            raise AttemptFailed(engine_unavailable(served.key, upstream.retry_after_s(), reason), True) from None
        except OSError as exc:
            self._failed(target, replica, breaker)
            reason = f"connection failed: {exc}"
            error = engine_unavailable(served.key, upstream.retry_after_s(), reason)
            raise AttemptFailed(error, broken=True, generation=generation) from None
        except AttemptFailed:
            self._failed(target, replica, breaker)
            raise
        except BaseException:
            upstream.active_requests -= 1
            raise
        replica.latency_ewma_s = updated_ewma(replica.latency_ewma_s, time.monotonic() - started)
        replica.breaker = after_success(replica.breaker)
        opened = OpenCall(replica, response, first)
        if opened.status == 500 and not target.remote and request_fault(first):
            opened.status = 400  # the engine answered: the request was at fault, not the engine (see request_fault)
        return opened

    async def _exchange(self, replica: Replica, path: str, body: bytes, stream: bool) -> tuple[UpstreamResponse, bytes]:
        """Send the request and read the whole answer (JSON, errors) or a stream's first piece; the connection is
        closed on any failure, cancellation included."""
        assert self.session is not None
        response = await self.session.post(replica.upstream.base_url + path, body, replica.auth_header)
        if response.attempts > 1:
            self._metrics.upstream_retries.inc(response.attempts - 1)
        try:
            if response.status == 200 and stream:
                return response, await response.next_chunk() or b""
            return response, await response.read()
        except BaseException:
            response.close()
            raise

    def _failed(self, target: RouteTarget, replica: Replica, policy: BreakerPolicy) -> None:
        upstream = replica.upstream
        upstream.active_requests -= 1
        before = replica.breaker
        if replica.failed_generation != upstream.generation:  # an earlier process's failures say nothing of this one
            replica.failed_generation = upstream.generation
            before = CLOSED
        replica.breaker = after_failure(before, time.monotonic(), policy)
        replica.breaker_policy = policy
        if replica.breaker.ejected and not before.ejected:
            self._routing.ejected(target.name, replica.name)


def request_fault(raw: bytes) -> bool:
    """Whether a local llama-server's 500 is its answer to a request it could not take.

    llama-server answers 500 with its error envelope (``{"error": {"code": 500, "type": "server_error", ...}}``)
    when a handler throws while reading the request: image or audio parts for a model without a projector,
    ``tools`` its template cannot render, a malformed grammar. The engine is fine; a failing engine does not
    answer at all (the connection breaks) or misses its health checks. Counting these against its breaker would
    let any client eject the engine for everyone with three bad requests, so they are 400s and never retried."""
    if not raw.startswith(b"{"):
        return False
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    error = payload.get("error") if isinstance(payload, dict) else None
    return isinstance(error, dict) and error.get("code") == 500 and error.get("type") == "server_error"


def engine_error(model: str, status: int, raw: bytes) -> APIError:
    """An engine's error answer in the gateway's words. Engines report errors in slightly different shapes
    (llama-server uses an integer ``code``); a 503 means "not now", other 5xx a failure, 4xx the request."""
    message, type_ = raw.decode(errors="replace")[:500] or f"HTTP {status}", None
    try:
        payload = orjson.loads(raw)
        detail = payload.get("error", payload) if isinstance(payload, dict) else {}
        if isinstance(detail, dict):
            message = str(detail.get("message", message))[:1000]  # engines may quote the whole request back
            type_ = detail.get("type")
    except orjson.JSONDecodeError:
        pass
    if status == 503:
        return engine_unavailable(model, 2, message)
    if status < 400:  # an informational or redirect status is not an answer an OpenAI client can use
        return upstream_failed(model, f"unexpected HTTP {status} from the engine")
    if status >= 500 and status != 501:
        return upstream_failed(model, message)
    return engine_rejected(status if status != 501 else 400, message, type_ == "not_supported_error")
