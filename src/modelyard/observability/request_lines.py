"""One log line per request, written in batches.

Going through ``logging`` for every request cost more than the proxying itself (a LogRecord, handler locks and a
formatter per request). Instead the finished record is appended to a bounded queue, and every 200 ms a worker
thread formats the batch with orjson and hands it to the logging pipeline as *one* pre-formatted record, so the
lines still share the logging thread and lock with every other log line and never interleave with them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

import orjson

from modelyard.observability.request_record import RequestRecord

request_log = logging.getLogger("modelyard.requests")


class RequestLineWriter:
    def __init__(self, fmt: str = "text", capacity: int = 50_000, interval_s: float = 0.2) -> None:
        self._json = fmt == "json"
        self._capacity = capacity
        self._interval_s = interval_s
        self._queue: collections.deque[RequestRecord] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    @staticmethod
    def wanted() -> bool:
        return request_log.isEnabledFor(logging.INFO)

    def offer(self, record: RequestRecord) -> None:
        if len(self._queue) >= self._capacity:
            self.dropped += 1
            return
        self._queue.append(record)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-lines")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if self._queue:
                await asyncio.to_thread(self._flush)

    def _flush(self) -> None:
        batch = [self._queue.popleft() for _ in range(len(self._queue))]
        if batch:
            text = "\n".join(self.format(record) for record in batch)
            request_log.info(text, extra={"raw": True})

    def format(self, record: RequestRecord) -> str:
        wall = record.received_at + record.duration_s
        message = f"{record.endpoint} {record.route} {record.status} in {record.duration_s * 1000:.1f} ms"
        fields = record.log_fields()
        if self._json:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"
            line = {"ts": stamp, "level": "info", "logger": request_log.name, "msg": message, **fields}
            return orjson.dumps(line).decode()
        pairs = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        return f"{time.strftime('%H:%M:%S', time.localtime(wall))} INFO    {request_log.name}: {message} {pairs}"
