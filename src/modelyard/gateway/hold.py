"""Holding requests while their engines come back: nothing is lost when an engine dies.

When no replica of a request's targets is usable but some are *coming back* (a supervised engine starting or
restarting, or an ejected replica whose engine process has since been replaced), the request has not reached
any engine and nothing has been sent to its client: it can wait. It waits in a bounded per-route hold (the
route's ``retry.hold_max``), until a replica is usable again or the route's ``retry.hold_s`` has passed, and then
forward tries it again. The same holds for a request whose engine died under it before the first byte: the
attempt failed with nothing sent, so it is retried once the engine is back.

Replicas whose call just failed on a broken connection are *suspects* for a short grace: the supervisor may not
have noticed the process exit yet (the socket's reset and the child's exit reach the event loop in either order).

Waiting costs nothing on the normal path: the hold is only entered after the attempts found no usable replica.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.model import Replica, Route

SUSPECT_GRACE_S = 2.0  # how long a replica whose connection just broke may take to be seen as restarting
_SLICE_S = 0.25  # longest sleep between checks (a replaced replica is re-admitted by the prober, not an event)


class HoldFull(Exception):
    """The route already holds as many requests as it may."""


class Hold:
    """The held requests of every route of one gateway process (a count per route, and the waiting itself)."""

    def __init__(self, metrics: RoutingMetrics) -> None:
        self._waiting: dict[str, int] = {}
        self._metrics = metrics

    def waiting(self, route: str) -> int:
        return self._waiting.get(route, 0)

    def enter(self, route: Route) -> None:
        """Count one more held request of ``route``; :class:`HoldFull` at its bound."""
        name = route.name
        count = self._waiting.get(name, 0)
        if count >= route.policy.retry.hold_max:
            self._metrics.hold_ended(name, "full")
            raise HoldFull(name)
        self._waiting[name] = count + 1
        self._metrics.hold_began(name)

    def leave(self, route: Route, outcome: str) -> None:
        name = route.name
        left = self._waiting.get(name, 1) - 1
        if left:
            self._waiting[name] = left
        else:
            self._waiting.pop(name, None)
        self._metrics.hold_ended(name, outcome)

    @staticmethod
    async def until_usable(candidates: list[Replica], suspects: list[tuple[Replica, int]], until: float) -> bool:
        """Wait until one of ``candidates`` is usable, or a suspect (a replica with the upstream generation its
        connection broke in) is usable in a newer generation: True; False at ``until`` (monotonic), or once none
        is coming back any more (a suspect still on its old process counts as coming back for its grace)."""
        grace_end = time.monotonic() + SUSPECT_GRACE_S
        while True:
            if any(r.usable for r in candidates) or any(r.usable and r.upstream.generation != g for r, g in suspects):
                return True
            now = time.monotonic()
            waiting = [r for r in candidates if r.coming_back] + [
                r for r, g in suspects if r.coming_back or (r.upstream.generation == g and now < grace_end)
            ]
            if not waiting or now >= until:
                return False
            await waiting[0].upstream.wait_change(min(_SLICE_S, until - now))


def coming_back(replicas: Iterable[Replica]) -> list[Replica]:
    return [r for r in replicas if not r.usable and r.coming_back]
