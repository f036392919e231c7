"""Per-key spend (tokens, cost, requests per budget period), written to the database off the hot path.

Each finished request adds its actual usage to an in-memory delta; a background task writes the deltas in one
transaction every ``flush_interval_s`` (like the request log: the request never waits on the database). The
budget check itself reads the limiter's counters: Redis's shared ones when configured (exact across replicas),
else this replica's own, folded together with the database's totals at every flush (so other replicas' spend is
seen within a flush interval). The CLI and ``GET /admin/keys/{id}/spend`` read the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from modelyard.security.key_store import KeyStore
from modelyard.security.ratelimit import MemoryLimiter, Spend, budget_period

log = logging.getLogger("modelyard.security")


def current_periods(now: float | None = None) -> list[str]:
    return [budget_period("day", now), budget_period("month", now)]


class SpendWriter:
    def __init__(self, store: KeyStore, limiter: object, flush_interval_s: float = 1.0) -> None:
        self._store = store
        self._limiter = limiter
        self._flush_interval_s = flush_interval_s
        self._pending: dict[str, Spend] = {}  # key id -> spend since the last flush
        self._requests: dict[str, int] = {}
        self._seeded = False
        self._task: asyncio.Task[None] | None = None

    def add(self, key_id: str, tokens: int, cost_usd: float) -> None:
        """Count a finished request: three additions on the hot path. The flush books the deltas in both of the
        key's periods (today, this month); a delta straddling midnight lands in the new day (≤ 1 s of usage)."""
        spent = self._pending.get(key_id)
        if spent is None:
            spent = self._pending[key_id] = Spend()
        spent.tokens += tokens
        spent.cost_usd += cost_usd
        self._requests[key_id] = self._requests.get(key_id, 0) + 1

    async def start(self) -> None:
        await self._refresh()
        self._task = asyncio.create_task(self._run(), name="spend-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            await self._flush()
            await self._refresh()

    async def _flush(self) -> None:
        if not self._pending:
            return
        pending, counts = self._pending, self._requests
        self._pending, self._requests = {}, {}
        periods = current_periods(time.time())
        deltas = [(k, p, s.tokens, s.cost_usd, counts.get(k, 0)) for k, s in pending.items() for p in periods]
        try:
            await asyncio.to_thread(self._store.add_spend, deltas)
        except Exception as exc:  # keep the deltas for the next try
            log.warning("spend: could not write %d rows: %s", len(deltas), exc)
            for key, spent in pending.items():
                merged = self._pending.setdefault(key, Spend())
                merged.tokens += spent.tokens
                merged.cost_usd += spent.cost_usd
                self._requests[key] = self._requests.get(key, 0) + counts.get(key, 0)

    async def _refresh(self) -> None:
        try:
            rows = await asyncio.to_thread(self._store.spend, current_periods(time.time()))
        except Exception as exc:
            log.warning("spend: could not read totals: %s", exc)
            return
        if isinstance(self._limiter, MemoryLimiter):
            periods = current_periods(time.time())
            unflushed = {(k, p): s for k, s in self._pending.items() for p in periods}
            self._limiter.merge_stored_spend(rows, unflushed)
        else:
            seed = getattr(self._limiter, "seed_spend", None)
            if seed is not None and not self._seeded:
                await seed(rows)
                self._seeded = True
