"""Which target of a route answers a request, and which follow if it fails: a pure function of the route and
plain facts about the request.

The facts are what routing is allowed to know — the route, the region the client asked for, the regions the
caller's key is limited to, the request body (for ``user``, the conversation and the small/large score) and a
way to read a named header — never the ASGI scope. The choices themselves are the pure functions beside this
module: weighted and sticky selection (``selection.py``, ``weights.py``), the complexity router
(``complexity.py``) and the fallback order.

Headers a client may send: ``x-modelyard-region`` (only targets tagged with that region, or untagged, are
used). A key limited to regions only reaches targets tagged with one of them (untagged targets run in the
gateway's own region, which admission checks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard.errors import no_target_in_region
from modelyard.routing.model import Route
from modelyard.routing.selection import TargetView, attempt_targets, choose_target, in_region, split_alternates


@dataclass(frozen=True)
class RequestFacts:
    payload: dict[str, Any]
    header: Callable[[bytes], bytes | None]  # a request header by lower-case name
    region: str | None = None  # the client's x-modelyard-region
    key_regions: tuple[str, ...] = ()  # regions the caller's key is limited to (empty: any)


@dataclass(frozen=True)
class RouterChoice:
    choice: str  # "small" | "large"
    score: float


@dataclass(frozen=True)
class RouteDecision:
    order: list[int]  # target indices: primary first, then the fallback chain
    affinity_key: str | None = None  # for session-affinity balancing
    router: RouterChoice | None = None  # set on small/large routes
    alternates: tuple[int, ...] = ()  # a split's other targets, for when the whole order is down

    @property
    def primary(self) -> int:
        return self.order[0]


SINGLE = RouteDecision([0])


def decide(route: Route, facts: RequestFacts, uniform: float) -> RouteDecision:
    """``uniform`` is a draw in [0, 1) for weighted choice (passed in, so the decision stays pure)."""
    if not route.declared:
        return SINGLE  # a registry id: one target, nothing to decide
    policy = route.policy
    views = [TargetView(t.name, t.weight, t.available, t.region) for t in route.targets]
    region = facts.region
    allowed = in_region(views, region)
    if facts.key_regions:  # a key limited to regions only reaches targets tagged with them
        allowed = [
            ok and (t.region is None or t.region in facts.key_regions) for ok, t in zip(allowed, views, strict=True)
        ]
        region = region or ", ".join(facts.key_regions)
    if not any(allowed):
        raise no_target_in_region(route.name, region, sorted({t.region for t in route.targets if t.region}))
    affinity = request_key(policy.affinity, facts) if policy.balancing == "session_affinity" else None
    if policy.router is not None:  # the router's choice is the answer's size: no other target stands in for it
        scored = policy.router.scorer.decide(facts.payload)
        primary = policy.router.large if scored.large else policy.router.small
        order = attempt_targets(primary, policy.fallbacks, allowed)
        return RouteDecision(order, affinity, RouterChoice(scored.choice, scored.score))
    sticky = request_key(policy.sticky_key, facts) if policy.sticky_key else None
    chosen = choose_target(route.name, views, allowed, sticky, uniform)
    order = attempt_targets(chosen if chosen is not None else 0, policy.fallbacks, allowed)
    return RouteDecision(order, affinity, None, split_alternates(order, views, allowed))


def request_key(source: str | None, facts: RequestFacts) -> str | None:
    """The value a stickiness or affinity key names: ``user``, ``header:NAME`` or ``conversation``."""
    if source == "user":
        user = facts.payload.get("user")
        return user if isinstance(user, str) and user else None
    if source == "conversation":
        return conversation_key(facts.payload)
    if source and source.startswith("header:"):
        value = facts.header(source[7:].lower().encode())
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
