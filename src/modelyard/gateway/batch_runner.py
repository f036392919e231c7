"""Batches in the background: each pending line runs through the chat path as the key that created the batch
(its limits, budget, guardrails and request log apply as to a live request), at the ``batch`` priority class, and
only on spare capacity.

One gateway at a time runs batches (the ``batches`` lease, ``store/leases.py``). Its loop takes the oldest active
batch, starts at most ``--batch-concurrency`` lines at once and starts a line only while fewer than
``--batch-live-limit`` live requests are in flight (:func:`spare_capacity`, deliberately simple and replaceable:
a fair queue with priority classes can take its place and read the lines' ``x-modelyard-priority: batch``). Each
answer is recorded as it arrives, so a restart redoes only the lines that had not answered. A line refused for
a rate limit or an unavailable engine waits and is tried again; other refusals are the line's answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from modelyard.batches.store import BatchStore, PendingLine
from modelyard.gateway.inner import Captured, inner_request
from modelyard.gateway.parse import BATCH_CHAT, BATCH_COMPLETIONS, BATCH_EMBEDDINGS, InferenceKind
from modelyard.gateway.pipeline import Pipeline

log = logging.getLogger("modelyard.batches")

KINDS = {"/v1/chat/completions": BATCH_CHAT, "/v1/completions": BATCH_COMPLETIONS, "/v1/embeddings": BATCH_EMBEDDINGS}
RETRIED = {429: "rate_limit_exceeded", 503: None}  # status → the code that is retried (None: any)


def spare_capacity(live_in_flight: int, limit: int) -> bool:
    """Whether a batch line may start now: only while live traffic leaves the engines room."""
    return live_in_flight < limit


class BatchRunner:
    def __init__(
        self,
        pipeline: Pipeline,
        store: BatchStore,
        grant_of: Callable[[str], Any],
        in_flight: Callable[[], int],
        concurrency: int,
        live_limit: int,
        authenticating: bool,
        poll_s: float = 1.0,
    ) -> None:
        """``grant_of``: key id → the key's current grant (None when auth is off or the key is gone);
        ``in_flight``: inference requests in flight in this process, batch lines included."""
        self._pipeline = pipeline
        self._store = store
        self._grant_of = grant_of
        self._in_flight = in_flight
        self._concurrency = concurrency
        self._live_limit = live_limit
        self._poll_s = poll_s
        self._authenticating = authenticating
        self._running = 0

    async def run(self) -> None:
        """The lease job: forever, work through the active batches."""
        while True:
            try:
                worked = await self._one_round()
            except Exception:
                log.exception("batch round failed")
                worked = False
            if not worked:
                await asyncio.sleep(self._poll_s)

    async def _one_round(self) -> bool:
        active = await asyncio.to_thread(self._store.active)
        if not active:
            return False
        batch_id, status = active[0]
        if status == "cancelling":
            await asyncio.to_thread(self._store.finalize, batch_id)
            return True
        lines = await asyncio.to_thread(self._store.pending, batch_id, self._concurrency * 8)
        if not lines:
            await asyncio.to_thread(self._store.finalize, batch_id)
            log.info("batch %s finished", batch_id)
            return True
        slots = asyncio.Semaphore(self._concurrency)
        await asyncio.gather(*(self._line(line, slots) for line in lines))
        return True

    async def _line(self, line: PendingLine, slots: asyncio.Semaphore) -> None:
        if self._authenticating and self._grant_of(line.key_id) is None:
            refusal = {"error": {"message": f"API key '{line.key_id}' is revoked or gone.", "code": "invalid_api_key"}}
            await asyncio.to_thread(self._store.record, line, 401, "", refusal)
            return
        async with slots:
            delay = 0.2
            while True:
                await self._wait_for_spare()
                self._running += 1
                try:
                    captured, request_id = await self._call(line)
                finally:
                    self._running -= 1
                if not _retry(captured):
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            try:
                response = orjson.loads(captured.body)
            except orjson.JSONDecodeError:
                response = {"error": {"message": captured.body.decode(errors="replace")[:500]}}
            await asyncio.to_thread(self._store.record, line, captured.status, request_id, response)

    async def _wait_for_spare(self) -> None:
        # Polled: the in-flight count lives on the hot path, which should not pay for a wake-up.
        while not spare_capacity(self._in_flight() - self._running, self._live_limit):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def _call(self, line: PendingLine) -> tuple[Captured, str]:
        kind: InferenceKind = KINDS[line.url]
        request_id = f"{line.batch_id}-{line.line}"
        scope = {
            "type": "http",
            "method": "POST",
            "path": line.url,
            # batch lines wait behind interactive requests for engine slots (gateway/slots.py)
            "headers": [(b"x-request-id", request_id.encode()), (b"x-modelyard-priority", b"batch")],
            "client": ("batch", 0),
            "query_string": b"",
        }
        captured = Captured()
        grant = self._grant_of(line.key_id) if line.key_id else None
        body = orjson.dumps({**line.body, "stream": False})
        await self._pipeline(inner_request(scope, grant, body, captured, priority=line.priority), kind)
        return captured, request_id


def _retry(captured: Captured) -> bool:
    if captured.status not in RETRIED:
        return False
    wanted = RETRIED[captured.status]
    if wanted is None:
        return True
    try:
        code = orjson.loads(captured.body).get("error", {}).get("code")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return bool(code == wanted)
