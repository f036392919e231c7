"""Getting every finished request to the log and the request-log table without the request ever waiting.

``offer()`` runs on the hot path: an append to a bounded in-memory queue, or — when the queue is full because
the database is slow or down — a counted drop. Never a wait, never an error for the client. A background task
sends the queue in batches to the record writer process (``record_writer.py``), which writes the log lines and
rows on another core. A batch stays counted in the queue until the writer acknowledges it, so the queue's
bound covers everything not yet written, and a batch in flight when the writer dies is sent again to the
writer started in its place (at least once: a batch committed just before a crash can be stored twice).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import sys
import time
from dataclasses import dataclass

import msgspec
from prometheus_client import Counter
from sqlalchemy.engine import URL

from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.record_frames import LENGTH, BatchCodec, FrameError, frame_length
from modelyard.observability.record_writer import DATABASE_URL_ENV, WriterConfig
from modelyard.observability.request_record import RequestRecord

log = logging.getLogger("modelyard.request_log")

WRITER_MODULE = "modelyard.observability.record_writer"
PIPE_BYTES = 1 << 20


@dataclass(frozen=True)
class ShipperTuning:
    capacity: int = 10_000  # records not yet written before new ones are dropped (and counted)
    batch_size: int = 2048  # records that make the shipper send at once instead of at the next interval
    frame_size: int = 128  # records per frame: the writer handles small frames faster (they stay in CPU cache)
    flush_interval_s: float = 0.2  # how stale a request's log line may be
    retention_days: float = 30.0
    body_retention_days: float = 7.0
    retention_check_s: float = 3600.0


@dataclass(frozen=True)
class ShipperTargets:
    """What the writer writes: request lines (in ``log_format``) and/or rows in the database at ``database``."""

    lines: bool
    database: URL | None
    log_level: str = "info"
    log_format: str = "text"


class RecordShipper:
    def __init__(self, targets: ShipperTargets, metrics: GatewayMetrics, settings: ShipperTuning) -> None:
        self._targets = targets
        self._settings = settings
        self._codec = BatchCodec()
        self._queue: collections.deque[RequestRecord] = collections.deque()
        self._unacked: dict[int, list[RequestRecord]] = {}
        self._pending = 0  # queued + sent but not acknowledged: what the capacity bounds
        self._overflow = 0  # records dropped since the queue last filled up (0: not full)
        self._seq = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        registry = metrics.registry
        self._dropped = Counter(
            "modelyard_request_log_dropped",
            "Finished requests not stored: the queue to the record writer was full, or the database refused the row.",
            registry=registry,
        )
        self._written = Counter(
            "modelyard_request_log_written", "Request-log records written to the database.", registry=registry
        )
        self._write_errors = Counter(
            "modelyard_request_log_write_errors", "Failed request-log batch writes (retried).", registry=registry
        )
        self._restarts = Counter(
            "modelyard_request_log_writer_restarts",
            "Times the record writer process exited unexpectedly and was started again.",
            registry=registry,
        )
        metrics.gauge_callback(
            "modelyard_request_log_queue_depth", "Finished requests not yet logged and stored.", self.depth
        )

    def depth(self) -> int:
        return self._pending

    def offer(self, record: RequestRecord) -> None:
        if self._pending >= self._settings.capacity:
            self._dropped.inc()
            if not self._overflow:  # logged once per overflow, not once per dropped record
                self._overflow = 1
                log.error(
                    "request log: %d records wait for the writer (the database is slow or away); dropping new "
                    "records until it catches up (counted in modelyard_request_log_dropped_total)",
                    self._pending,
                )
            else:
                self._overflow += 1
            return
        self._queue.append(record)
        self._pending += 1
        if len(self._queue) >= self._settings.batch_size:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-shipper")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, let the writer finish it (bounded by ``timeout_s``), then stop it."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        if self._pending:
            log.warning("request log: %d records not written at shutdown", self._pending)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                process = await self._spawn()
            except OSError as exc:
                failures += 1
                log.error("request log: cannot start the record writer: %s", exc)
                if self._stopping:
                    return
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                continue
            self._process = process
            started = time.monotonic()
            acks = asyncio.create_task(self._read_acks(process), name="record-writer-acks")
            try:
                await self._ship(process, acks)
            finally:
                if not acks.done():
                    acks.cancel()
            code = await process.wait()
            if self._stopping:
                return
            failures = 1 if time.monotonic() - started > 60 else failures + 1  # back-off grows only for crash loops
            self._restarts.inc()
            log.error(
                "request log: the record writer exited with code %s; starting another (%d records to resend)",
                code, sum(len(batch) for batch in self._unacked.values()),
            )  # fmt: skip
            await asyncio.sleep(min(30.0, 0.1 * 2**failures))

    async def _spawn(self) -> asyncio.subprocess.Process:
        targets, settings = self._targets, self._settings
        config = WriterConfig(
            log_level=targets.log_level,
            log_format=targets.log_format,
            lines=targets.lines,
            store=targets.database is not None,
            retention_days=settings.retention_days,
            body_retention_days=settings.body_retention_days,
            retention_check_s=settings.retention_check_s,
        )
        env = dict(os.environ)
        if targets.database is not None:
            env[DATABASE_URL_ENV] = targets.database.render_as_string(hide_password=False)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", WRITER_MODULE, msgspec.json.encode(config).decode(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        _widen_pipe(process)
        return process

    async def _ship(self, process: asyncio.subprocess.Process, acks: asyncio.Task[None]) -> None:
        """Resend what the last writer left unacknowledged, then batches as they fill or age, until the writer
        exits or the gateway stops (then: the rest, end of input, and wait for the writer to finish)."""
        stdin = process.stdin
        assert stdin is not None
        try:
            for seq in sorted(self._unacked):
                stdin.write(self._codec.batch(seq, self._unacked[seq]))
                await stdin.drain()
            while not acks.done():
                if not self._stopping:
                    waiting = asyncio.create_task(self._wake.wait())
                    await asyncio.wait(
                        (waiting, acks), timeout=self._settings.flush_interval_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    waiting.cancel()
                self._wake.clear()
                if self._queue and not acks.done():
                    # All frames in one write: the writer wakes once and reads them back to back.
                    frames = []
                    while self._queue:
                        count = min(self._settings.frame_size, len(self._queue))
                        batch = [self._queue.popleft() for _ in range(count)]
                        self._seq += 1
                        self._unacked[self._seq] = batch
                        frames.append(self._codec.batch(self._seq, batch))
                    stdin.write(b"".join(frames))
                    await stdin.drain()  # waits only this task, while the writer catches up
                if self._stopping:
                    stdin.close()
                    await acks
                    return
        except (BrokenPipeError, ConnectionResetError):
            await acks  # the writer died: its acknowledgements so far still count

    async def _read_acks(self, process: asyncio.subprocess.Process) -> None:
        stdout = process.stdout
        assert stdout is not None
        while True:
            try:
                header = await stdout.readexactly(LENGTH.size)
                ack = self._codec.read_ack(await stdout.readexactly(frame_length(header)))
            except asyncio.IncompleteReadError:
                return
            except FrameError as exc:
                log.error("request log: the record writer sent garbage (%s); restarting it", exc)
                process.kill()
                return
            if not ack.ok:
                self._write_errors.inc()
                continue
            batch = self._unacked.pop(ack.seq, None)
            if batch is None:
                continue
            self._pending -= len(batch)
            if self._overflow and self._pending < self._settings.capacity:
                log.warning("request log: the writer caught up; %d records were dropped meanwhile", self._overflow)
                self._overflow = 0
            if ack.refused:
                self._dropped.inc(ack.refused)
            if self._targets.database is not None:
                self._written.inc(len(batch) - ack.refused)


def _widen_pipe(process: asyncio.subprocess.Process) -> None:
    """A 1 MiB pipe (Linux; 64 KiB by default) takes a whole flush in one write, where a full pipe would wake
    the event loop again for every piece the writer reads."""
    transport = process.stdin.transport if process.stdin is not None else None
    pipe = transport.get_extra_info("pipe") if transport is not None else None
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError as exc:  # above /proc/sys/fs/pipe-max-size: keep the default
        log.debug("request log: pipe left at its default size: %s", exc)
