"""The request path of every inference endpoint, as one function that lists its stages.

    parse → resolve route → decide target → admit (keys, limits, guardrails) → adapt (tools, formats,
    logprobs, n) → forward (attempts, retries, fallbacks) → relay → settle → observe

Each stage is a function or object in its own module of this package (``parse.py``, ``resolve.py``,
``decide.py``, ``admit.py``, ``forward.py``, ``relay.py``; observing is ``observability/observers.py``). They share
one :class:`~modelyard.gateway.exchange.Exchange`, which owns the request's record and its answer's headers. A
stage that refuses the request raises an OpenAI-shaped error; :meth:`Pipeline._answer_failure` is the one place
such an error becomes this request's answer. Whatever happens, the request is settled and observed exactly once.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

import orjson

from modelyard.asgi import CLIENT_CLOSED, ClientDisconnected, Request, run_until_disconnect, send_error
from modelyard.errors import APIError, internal_error
from modelyard.gateway.adapt import Adapter
from modelyard.gateway.admit import Admit
from modelyard.gateway.decide import Decider
from modelyard.gateway.exchange import Exchange
from modelyard.gateway.forward import Call, Forwarder
from modelyard.gateway.parse import InferenceKind, Parsed, parse
from modelyard.gateway.resolve import resolve
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.shadow import Mirror, ShadowMirror
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.observers import RequestObservers
from modelyard.routing.catalog import ModelCatalog
from modelyard.routing.model import RouteTarget
from modelyard.security.layer import Admission

log = logging.getLogger("modelyard.gateway")


class Serving(Protocol):
    """Where the current catalog snapshot is read from (the control plane swaps it whole)."""

    @property
    def catalog(self) -> ModelCatalog: ...


class Pipeline:
    def __init__(
        self,
        serving: Serving,
        settings: GatewaySettings,
        decide: Decider,
        admit: Admit | None,
        forward: Forwarder,
        shadow: ShadowMirror,
        observe: RequestObservers,
        metrics: GatewayMetrics,
    ) -> None:
        self._serving = serving
        self._max_body_bytes = settings.max_body_bytes
        self._settings = settings
        self._decide = decide
        self._admit = admit
        self._forward = forward
        self._shadow = shadow
        self._observe = observe
        self._metrics = metrics

    async def __call__(self, request: Request, kind: InferenceKind) -> None:
        exchange = Exchange.begin(request, kind.name)
        admission: Admission | None = None
        mirror: Mirror | None = None
        status = 500
        self._metrics.in_flight += 1
        try:
            parsed = await parse(request, kind, self._max_body_bytes)
            route = resolve(exchange, parsed.model, self._serving.catalog)
            decision = self._decide(exchange, request, parsed, route)
            if self._admit is not None:
                admission = await self._admit.enter(exchange, parsed, route.targets[decision.order[0]])
            adapter = None if parsed.adapted is None else self._adapt(parsed, route.targets[decision.order[0]])
            call = Call.prepare(parsed, route, decision, admission, adapter)
            mirror = self._keep_bodies_and_mirror(exchange, parsed.body, call, decision.order[0])
            status = await run_until_disconnect(
                request.receive, request.send, lambda send: self._forward(send, exchange, call)
            )
        except Exception as failure:  # every failure is answered here; bugs are also logged as such
            status = await self._answer_failure(request, exchange, failure)
        finally:
            self._metrics.in_flight -= 1
            exchange.finish(status, mirrored=mirror is not None)
            if mirror is not None:
                mirror.primary_finished(exchange.record, status)
                exchange.release_bodies()
            if admission is not None and self._admit is not None:
                await self._admit.exit(exchange, admission)
            self._observe(exchange.record)

    def _adapt(self, parsed: Parsed, primary: RouteTarget) -> Adapter | None:
        """Tools, formats, logprobs, n and echo, checked against what the primary's engine kind can do."""
        adapter = Adapter.of(parsed, self._settings)
        if adapter is not None:
            adapter.check(primary.served.capabilities)
        return adapter

    def _keep_bodies_and_mirror(self, exchange: Exchange, body: bytes, call: Call, primary: int) -> Mirror | None:
        """Bodies are kept when the request log samples this request or a shadow copy needs the answer to compare;
        a redacted request is kept as redacted."""
        route = call.route
        logged = self._observe.keep_bodies(route.name, exchange.request_id)
        shadowed = route.policy.shadow is not None and self._shadow.wanted(route, primary)
        if logged or shadowed:
            exchange.keep_bodies(orjson.dumps(call.payload) if call.redacted else body, logged)
        return self._shadow.mirror(route, call, exchange.record) if shadowed else None

    @staticmethod
    async def _answer_failure(request: Request, exchange: Exchange, failure: Exception) -> int:
        if isinstance(failure, ClientDisconnected):
            exchange.failed("client_closed")
            return CLIENT_CLOSED
        if isinstance(failure, APIError):
            error = failure
        else:  # a bug, not a client or engine problem: still answered in OpenAI's shape
            log.exception("unhandled error in %s request %s", exchange.record.endpoint, exchange.request_id)
            error = internal_error(exchange.request_id)
        exchange.failed(error.kind)
        with contextlib.suppress(Exception):  # the client may be gone already
            await send_error(request.send, error, exchange.headers())
        return error.status
