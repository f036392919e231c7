"""Stage 3, decide: which target answers and which follow if it fails.

Gathers the plain facts routing may use (the client's region header, the key's regions, the body, a header
reader) and hands them to the pure decision in ``routing/decide.py``; then names the primary target on the
exchange, counts small/large decisions and answers ``x-modelyard-router: large; score=0.62`` on such routes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from modelyard.asgi import Request
from modelyard.errors import embeddings_unsupported, not_a_generative_model
from modelyard.gateway.exchange import Exchange
from modelyard.gateway.parse import Parsed
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.decide import SINGLE, RequestFacts, RouteDecision, decide
from modelyard.routing.model import Route


class Decider:
    def __init__(self, metrics: RoutingMetrics, uniform: Callable[[], float] = random.random) -> None:
        self._metrics = metrics
        self._uniform = uniform

    def __call__(self, exchange: Exchange, request: Request, parsed: Parsed, route: Route) -> RouteDecision:
        # a registry id has one target: nothing to decide
        decision = decide(route, self._facts(exchange, request, parsed), self._uniform()) if route.declared else SINGLE
        if decision.router is not None:
            choice = decision.router
            exchange.add_header(b"x-modelyard-router", f"{choice.choice}; score={choice.score}".encode())
            self._metrics.routed(route.name, choice.choice, choice.score)
        primary = route.targets[decision.order[0]]
        exchange.name_target(primary)
        if parsed.kind.streams:
            if not primary.served.generates:
                raise not_a_generative_model(primary.served.name)
        elif not primary.served.embeddings:
            raise embeddings_unsupported(primary.served.name)
        return decision

    @staticmethod
    def _facts(exchange: Exchange, request: Request, parsed: Parsed) -> RequestFacts:
        region = request.header(b"x-modelyard-region")
        grant = exchange.grant
        return RequestFacts(
            payload=parsed.payload,
            header=request.header,
            region=region.decode(errors="replace") if region else None,
            key_regions=grant.regions if grant is not None else (),
        )
