"""Getting every request's record into the database without the request ever waiting for it.

``offer()`` runs on the hot path: an append to a bounded in-memory queue, or — when the queue is full because
the database is slow or down — a counted drop. Never a wait, never an error for the client. A background task
takes batches off the queue and inserts them from a worker thread; retention runs on the same task, hourly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_record import RequestRecord
from modelyard.store.database import StoreUnavailable

log = logging.getLogger("modelyard.request_log")


@dataclass(frozen=True)
class RequestLogSettings:
    capacity: int = 10_000  # records waiting for the database before new ones are dropped (and counted)
    batch_size: int = 2000  # fewer, larger transactions: the per-batch cost is a commit and a thread hop
    flush_interval_s: float = 1.0
    retention_days: float = 30.0
    body_retention_days: float = 7.0
    retention_check_s: float = 3600.0


class RequestLogWriter:
    def __init__(self, store: RequestLogStore, metrics: GatewayMetrics, settings: RequestLogSettings) -> None:
        self._store = store
        self._settings = settings
        self._queue: collections.deque[RequestRecord] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        registry = metrics.registry
        self._dropped = Counter(
            "modelyard_request_log_dropped",
            "Request-log records dropped because the queue to the database was full.",
            registry=registry,
        )
        self._written = Counter(
            "modelyard_request_log_written", "Request-log records written to the database.", registry=registry
        )
        self._write_errors = Counter(
            "modelyard_request_log_write_errors", "Failed request-log batch writes (retried).", registry=registry
        )
        metrics.gauge_callback(
            "modelyard_request_log_queue_depth", "Request-log records waiting to be written.", self.depth
        )

    def depth(self) -> int:
        return len(self._queue)

    def offer(self, record: RequestRecord) -> None:
        if len(self._queue) >= self._settings.capacity:
            self._dropped.inc()
            return
        self._queue.append(record)
        if len(self._queue) >= self._settings.batch_size:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-log-writer")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (bounded by ``timeout_s``), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deadline = time.monotonic() + timeout_s
        while self._queue and time.monotonic() < deadline:
            if not await self._write_batch():
                break
        if self._queue:
            log.warning("request log: %d records not written at shutdown", len(self._queue))

    async def _run(self) -> None:
        next_retention = time.monotonic()
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.flush_interval_s)
            self._wake.clear()
            while self._queue:
                if await self._write_batch():
                    failures = 0
                    continue
                failures += 1
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))  # the queue absorbs the outage, then drops
                break
            if time.monotonic() >= next_retention:
                next_retention = time.monotonic() + self._settings.retention_check_s
                await self._apply_retention()

    async def _write_batch(self) -> bool:
        batch = [self._queue.popleft() for _ in range(min(self._settings.batch_size, len(self._queue)))]
        try:
            written = await asyncio.to_thread(self._store.insert, batch)
        except Exception as exc:  # the database is down or refused: keep the batch at the front and retry
            self._write_errors.inc()
            if isinstance(exc, StoreUnavailable):
                log.warning("request log: database unavailable (%d queued): %s", len(self._queue) + len(batch), exc)
            else:
                log.exception("request log: writing a batch of %d failed", len(batch))
            room = self._settings.capacity - len(self._queue)
            keep = batch[:room] if room > 0 else []
            self._queue.extendleft(reversed(keep))
            if len(keep) < len(batch):
                self._dropped.inc(len(batch) - len(keep))
            return False
        self._written.inc(written)
        return True

    async def _apply_retention(self) -> None:
        now = datetime.now(UTC)
        rows_before = now - timedelta(days=self._settings.retention_days)
        bodies_before = now - timedelta(days=self._settings.body_retention_days)
        try:
            removed, blanked = await asyncio.to_thread(self._store.purge, rows_before, bodies_before)
        except Exception as exc:
            log.warning("request log: retention pass failed: %s", exc)
            return
        if removed or blanked:
            log.info("request log retention: %d rows removed, %d bodies cleared", removed, blanked)
