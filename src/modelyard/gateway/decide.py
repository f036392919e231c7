"""Turn a request and its route into a routing decision: the primary target, the fallback order and the
balancing key. The request-facing part (headers, ``user``, messages) is read here; the choices themselves are
the pure functions of ``routing/``.

Headers a client may send: ``x-modelyard-region`` (only targets tagged with that region, or untagged, are
used). An API key limited to regions only reaches targets tagged with one of them (untagged targets run in the
gateway's own region, which the security layer checks). Headers set on the answer:
``x-modelyard-router: large; score=0.62`` on small/large routes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard.api.asgi import Scope, header
from modelyard.errors import APIError
from modelyard.gateway.catalog import Route
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.selection import TargetView, attempt_targets, choose_target, in_region
from modelyard.security.layer import GRANT


@dataclass(frozen=True)
class RouteDecision:
    order: list[int]  # target indices: primary first, then the fallback chain
    affinity_key: str | None = None  # for session-affinity balancing


SINGLE = RouteDecision([0])


class RouteDecider:
    def __init__(self, metrics: RoutingMetrics, uniform: Callable[[], float] = random.random) -> None:
        self._metrics = metrics
        self._uniform = uniform

    def decide(
        self, route: Route, scope: Scope, payload: dict[str, Any], response_headers: list[tuple[bytes, bytes]]
    ) -> RouteDecision:
        if not route.declared:
            return SINGLE  # a registry id: one target, nothing to decide
        policy = route.policy
        views = [TargetView(t.name, t.weight, t.available, t.region) for t in route.targets]
        region_header = header(scope, b"x-modelyard-region")
        region = region_header.decode(errors="replace") if region_header else None
        allowed = in_region(views, region)
        grant = scope.get(GRANT)
        if grant is not None and grant.regions:  # a key limited to regions only reaches targets tagged with them
            allowed = [
                ok and (t.region is None or t.region in grant.regions) for ok, t in zip(allowed, views, strict=True)
            ]
            region = region or ", ".join(grant.regions)
        if not any(allowed):
            regions = sorted({t.region for t in route.targets if t.region})
            raise APIError(
                400,
                f"Route '{route.name}' has no target in region '{region}' (regions: {', '.join(regions)}).",
                code="no_target_in_region",
                param="x-modelyard-region",
            )
        if policy.router is not None:
            decision = policy.router.scorer.decide(payload)
            primary = policy.router.large if decision.large else policy.router.small
            response_headers.append((b"x-modelyard-router", f"{decision.choice}; score={decision.score}".encode()))
            self._metrics.routed(route.name, decision.choice, decision.score)
        else:
            sticky = _key(policy.sticky_key, scope, payload) if policy.sticky_key else None
            chosen = choose_target(route.name, views, allowed, sticky, self._uniform())
            primary = chosen if chosen is not None else 0
        affinity = _key(policy.affinity, scope, payload) if policy.balancing == "session_affinity" else None
        return RouteDecision(attempt_targets(primary, policy.fallbacks, allowed), affinity)


def _key(source: str | None, scope: Scope, payload: dict[str, Any]) -> str | None:
    """The value a stickiness or affinity key names: ``user``, ``header:NAME`` or ``conversation``."""
    if source == "user":
        user = payload.get("user")
        return user if isinstance(user, str) and user else None
    if source == "conversation":
        return conversation_key(payload)
    if source and source.startswith("header:"):
        value = header(scope, source[7:].lower().encode())
        return value.decode(errors="replace") if value else None
    return None


def conversation_key(payload: dict[str, Any]) -> str | None:
    """A conversation's identity: its system prompt and first user message, which every later turn repeats
    (so all turns reach the replica whose prompt cache holds that prefix)."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        prompt = payload.get("prompt")
        return hashlib.blake2b(prompt[:2000].encode(), digest_size=8).hexdigest() if isinstance(prompt, str) else None
    head = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        head.append(f"{message.get('role')}:{content if isinstance(content, str) else ''}")
        if message.get("role") == "user":
            break
    return hashlib.blake2b("\n".join(head).encode(), digest_size=8).hexdigest()
