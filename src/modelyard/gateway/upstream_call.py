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
from modelyard.routing.breaker import BreakerPolicy, after_failure, after_success
from modelyard.routing.model import Replica, RouteTarget
from modelyard.routing.prefix import PrefixIndex


class AttemptFailed(Exception):
    def __init__(self, error: APIError, timed_out: bool = False) -> None:
        self.error = error
        self.timed_out = timed_out


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
        upstream.active_requests += 1
        try:
            if timeout is None:  # no deadline: skip the timer (the common case for registry ids)
                response, first = await self._exchange(replica, path, body, stream)
            else:
                async with asyncio.timeout(timeout):
                    response, first = await self._exchange(replica, path, body, stream)
            if response.status != 200 and response.status in retry_on:
                response.close()
                raise AttemptFailed(engine_error(served.key, response.status, first))
        except TimeoutError:
            self._failed(target, replica, breaker)
            reason = f"no answer within {timeout or 0:.1f} s"
            raise AttemptFailed(engine_unavailable(served.key, upstream.retry_after_s(), reason), True) from None
        except OSError as exc:
            self._failed(target, replica, breaker)
            reason = f"connection failed: {exc}"
            raise AttemptFailed(engine_unavailable(served.key, upstream.retry_after_s(), reason)) from None
        except AttemptFailed:
            self._failed(target, replica, breaker)
            raise
        except BaseException:
            upstream.active_requests -= 1
            raise
        replica.latency_ewma_s = updated_ewma(replica.latency_ewma_s, time.monotonic() - started)
        replica.breaker = after_success(replica.breaker)
        return OpenCall(replica, response, first)

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
        replica.upstream.active_requests -= 1
        before = replica.breaker
        replica.breaker = after_failure(before, time.monotonic(), policy)
        replica.breaker_policy = policy
        if replica.breaker.ejected and not before.ejected:
            self._routing.ejected(target.name, replica.name)


def engine_error(model: str, status: int, raw: bytes) -> APIError:
    """An engine's error answer in the gateway's words. Engines report errors in slightly different shapes
    (llama-server uses an integer ``code``); a 503 means "not now", other 5xx a failure, 4xx the request."""
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
    return engine_rejected(status if status != 501 else 400, message, type_ == "not_supported_error")
