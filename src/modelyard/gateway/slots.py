"""Admission to engine slots: each replica takes at most its concurrency limit (its slots) at once; requests
beyond it wait here, in the gateway, not inside the engine — fair between keys, interactive before batch,
cancelled the moment their client leaves, bounded, and measured (queue depth and time queued, the signal an
autoscaler scales on).

Fairness is start-time fair queuing: each key's requests get increasing virtual start tags
(``max(virtual time, the key's last tag) + 1``) and a freed slot goes to the waiting request with the lowest
``(priority class, tag)``. A key that sends ten times as much gets ten tags in a row, so it waits behind its own
backlog, while a light key's next request is tagged near the current virtual time and goes out within about one
turn of each backlogged key. Strict priority between classes: a batch request only gets a slot when no
interactive one waits.

When a slot is free and nobody waits, entering is a counter increment (no future, no heap, no timer).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from dataclasses import dataclass, field

INTERACTIVE = 0
BATCH = 1
PRIORITIES = {"interactive": INTERACTIVE, "batch": BATCH}
_PRUNE_AT = 4096  # keys remembered per gate before the ones at or behind virtual time are forgotten


class QueueFull(Exception):
    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(f"{waiting} requests already wait")
        self.waiting = waiting
        self.retry_after_s = retry_after_s


@dataclass(order=True)
class _Waiter:
    priority: int
    tag: float
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class FairGate:
    """The slots of one replica and the requests waiting for them."""

    __slots__ = ("_heap", "_last", "_seq", "_virtual", "in_use", "limit", "max_waiting", "waiting")

    def __init__(self, limit: int, max_waiting: int) -> None:
        self.limit = limit
        self.max_waiting = max_waiting
        self.in_use = 0
        self.waiting = 0
        self._heap: list[_Waiter] = []
        self._last: dict[str, float] = {}
        self._virtual = 0.0
        self._seq = itertools.count()

    def try_enter(self) -> bool:
        """Take a slot at once if one is free and nobody is ahead (the common, unqueued case)."""
        if self.in_use < self.limit and not self.waiting:
            self.in_use += 1
            return True
        return False

    async def enter(self, key: str, priority: int, retry_after_s: int) -> None:
        """Wait for a slot; :class:`QueueFull` when ``max_waiting`` already wait. A cancelled wait (the client
        left) leaves the queue, and passes on a slot it was given in the same instant."""
        if self.try_enter():
            return
        if self.waiting >= self.max_waiting:
            raise QueueFull(self.waiting, retry_after_s)
        tag = max(self._virtual, self._last.get(key, 0.0)) + 1.0
        self._last[key] = tag
        if len(self._last) > _PRUNE_AT:
            self._last = {k: t for k, t in self._last.items() if t > self._virtual}
        waiter = _Waiter(priority, tag, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._heap, waiter)
        self.waiting += 1
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.leave()  # it was handed a slot as it was cancelled: pass the slot on
            else:
                waiter.future.cancel()  # skipped when popped
                self.waiting -= 1
            raise

    def leave(self) -> None:
        """Give a slot back: to the first waiter in order, else to the pool."""
        heap = self._heap
        while heap:
            waiter = heapq.heappop(heap)
            if waiter.future.done():  # cancelled while waiting (already uncounted)
                continue
            self.waiting -= 1
            self._virtual = waiter.tag
            waiter.future.set_result(None)  # the slot moves to it: in_use unchanged
            return
        self.in_use -= 1


class SlotGates:
    """One :class:`FairGate` per replica that has a concurrency limit, by replica name (replicas outlive catalogs,
    and so do their gates; a changed limit applies to the next gate made for a new replica name)."""

    def __init__(self, max_waiting: int) -> None:
        self._gates: dict[str, FairGate] = {}
        self._max_waiting = max_waiting

    def gate(self, name: str, limit: int) -> FairGate | None:
        """The replica's gate; None when it has no limit (0)."""
        if not limit:
            return None
        gate = self._gates.get(name)
        if gate is None or gate.limit != limit:
            if gate is not None and (gate.in_use or gate.waiting):
                gate.limit = limit  # a changed limit, while requests are in: adjust in place
                return gate
            gate = self._gates[name] = FairGate(limit, self._max_waiting)
        return gate

    def depth(self) -> int:
        return sum(g.waiting for g in self._gates.values())


def retry_after(waiting: int, limit: int, latency_s: float | None) -> int:
    """Seconds until a request queued behind ``waiting`` others might get a slot (a hint, at least 1)."""
    per_turn = latency_s if latency_s is not None else 1.0
    return max(1, math.ceil((waiting / max(1, limit)) * per_turn))


def priority_of(requested: bytes | None, allowed: str) -> int:
    """The request's class: what it asks for (``x-modelyard-priority``), never above what its key allows."""
    ceiling = PRIORITIES.get(allowed, INTERACTIVE)
    asked = PRIORITIES.get(requested.decode(errors="replace").strip().lower(), ceiling) if requested else ceiling
    return max(asked, ceiling)
