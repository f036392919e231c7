"""The record writer process: request log lines and request-log rows, written beside the gateway, not in it.

Why a process and not a thread: formatting a line and inserting a row cost ~10 µs of CPU a request, and on a
thread of the gateway process that work also takes the GIL from the event loop in slices of milliseconds (a
batch insert holds it while it binds two thousand rows); at saturation the gateway lost 40 % of its throughput
to it. In its own process the work runs on another core and never touches the gateway's GIL.

The gateway (``record_shipper.py``) starts it as ``python -m modelyard.observability.record_writer CONFIG`` and
sends batches of finished records on its stdin (``record_frames.py``). For each batch this process writes the
request lines to its stderr (the gateway's own, inherited), inserts the rows in one transaction, and then
acknowledges the batch on stdout. A failed insert is reported, retried with back-off, and blocks reading the
next batch, so the pipe fills and the gateway's bounded queue absorbs the outage (then drops, counted). It
ignores SIGINT and SIGTERM: it stops when the gateway closes its stdin, after writing what it was sent, so a
Ctrl-C or a pod's SIGTERM never loses the batches the gateway flushes while it drains.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import msgspec

from modelyard.observability.logs import configure_logging
from modelyard.observability.record_frames import Ack, BatchCodec, FrameBuffer, FrameError
from modelyard.observability.request_lines import RequestLineFormatter, write_lines
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.request_row import RowBuilder
from modelyard.store.database import Database, StoreUnavailable
from modelyard.store.leases import Leases

log = logging.getLogger("modelyard.request_log")

READ_BYTES = 1 << 20  # many frames per read: the gateway writes a whole flush at once
RETENTION_LEASE = "request-log-retention"
DATABASE_URL_ENV = "MODELYARD_RECORD_WRITER_DATABASE_URL"  # passed in the environment: never in argv (ps)


class WriterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    log_level: str = "info"
    log_format: str = "text"
    lines: bool = True  # write one log line per request
    store: bool = True  # insert rows (the database URL is in DATABASE_URL_ENV)
    retention_days: float = 30.0
    body_retention_days: float = 7.0
    retention_check_s: float = 3600.0
    rows_per_transaction: int = 2048
    transaction_wait_s: float = 0.5  # how long a row may wait for others to share its transaction
    max_backoff_s: float = 30.0


class RecordWriter:
    def __init__(self, config: WriterConfig, store: RequestLogStore | None, acks: BinaryIO, lines_fd: int) -> None:
        self._config = config
        self._store = store
        self._acks = acks
        self._lines_fd = lines_fd
        self._codec = BatchCodec()
        self._formatter = RequestLineFormatter(config.log_format) if config.lines else None
        self._next_retention = time.monotonic()
        self._holder = f"{socket.gethostname()}:{os.getpid()}:writer"
        self._rows = RowBuilder(timestamp_as_text=store is None or store.database.is_sqlite)
        self._waiting_rows: list[tuple[Any, ...]] = []
        self._waiting_seqs: list[tuple[int, int]] = []  # (batch, its row count), in order
        self._waiting_since = 0.0
        self.lost_lines = 0  # request lines the log's file descriptor refused (ENOSPC, EFBIG, EPIPE)
        self._lines_failing = False

    def run(self, batches: int) -> None:
        """Until the gateway closes the pipe (file descriptor ``batches``): each batch's lines as it arrives; its
        rows once enough are waiting or the oldest has waited ``transaction_wait_s`` (one transaction for many
        small batches); retention when it is due."""
        frames = FrameBuffer()
        while True:
            if self._store is not None and time.monotonic() >= self._next_retention:
                self._next_retention = time.monotonic() + self._config.retention_check_s
                self._apply_retention()
            if self._waiting_seqs:  # rows are waiting: store them when enough are, or when the oldest is due
                due = self._waiting_since + self._config.transaction_wait_s
                wait_s: float | None = max(0.0, due - time.monotonic())
            elif self._store is not None:
                wait_s = max(0.0, self._next_retention - time.monotonic())
            else:
                wait_s = None
            readable, _, _ = select.select([batches], [], [], wait_s)
            if not readable:
                self.flush()
                continue
            data = os.read(batches, READ_BYTES)
            if not data:
                self.flush()
                if frames.partial:
                    raise FrameError("the gateway's pipe ended inside a frame")
                return
            for payload in frames.feed(data):
                seq, records = self._codec.read_batch(payload)
                self.take(seq, records)

    def take(self, seq: int, records: list[RequestRecord]) -> None:
        """Write the batch's lines now and queue its rows (small batches keep the records in the CPU's cache:
        two thousand at once cost twice as much per record)."""
        row = self._rows.row
        rows = [row(record) for record in records]  # once, for the line and the table
        if self._formatter is not None:
            lines = bytearray()
            append = self._formatter.append
            for record, values in zip(records, rows, strict=True):
                append(lines, record, values)
            try:
                write_lines(self._lines_fd, lines)
            except OSError as exc:  # the log's disk is full (or its reader gone): the lines are lost, not the rows
                self.lost_lines += len(records)
                if not self._lines_failing:
                    self._lines_failing = True
                    log.error("request log: request lines cannot be written (%s); storing rows only", exc)
            else:
                self._lines_failing = False
        if not self._waiting_seqs:
            self._waiting_since = time.monotonic()
        self._waiting_rows.extend(rows)
        self._waiting_seqs.append((seq, len(rows)))
        if len(self._waiting_rows) >= self._config.rows_per_transaction:
            self.flush()

    def flush(self) -> None:
        """Insert the waiting rows in one transaction, then acknowledge their batches. An outage is retried until
        it ends; rows the database refuses (bad data) are stored one by one so that only the refused ones are
        dropped (and counted), never blocking everything behind them."""
        if not self._waiting_seqs:
            return
        refused: set[int] = set()  # indices into the waiting rows
        failures = 0
        outage_since = 0.0
        while self._store is not None and self._waiting_rows:
            try:
                self._store.insert_rows(self._waiting_rows)
                if failures:
                    waited = time.monotonic() - outage_since
                    log.warning("request log: writing again after %d failed attempts (%.1f s)", failures, waited)
                break
            except StoreUnavailable as exc:  # down, locked or its disk full: report, keep the rows, try again
                failures += 1
                count = len(self._waiting_rows)
                if failures == 1:  # once per outage, not once per retry (each is counted as a write error)
                    outage_since = time.monotonic()
                    log.warning("request log: writing %d rows failed, retrying until it works: %s", count, exc)
                else:
                    log.debug("request log: writing %d rows failed (attempt %d): %s", count, failures, exc)
                self._send(Ack(self._waiting_seqs[0][0], ok=False, message=_first_line(exc)))
                time.sleep(min(self._config.max_backoff_s, 0.5 * 2 ** (failures - 1)))
            except Exception as exc:  # the rows themselves were refused
                log.error("request log: the database refused a batch (%s); storing its rows one by one", exc)
                refused = self._insert_one_by_one()
                break
        start = 0
        for seq, count in self._waiting_seqs:
            dropped = sum(1 for index in range(start, start + count) if index in refused) if refused else 0
            self._send(Ack(seq, ok=True, refused=dropped))
            start += count
        self._acks.flush()
        self._waiting_rows, self._waiting_seqs = [], []

    def _insert_one_by_one(self) -> set[int]:
        assert self._store is not None
        refused = set()
        for index, row in enumerate(self._waiting_rows):
            try:
                self._store.insert_rows([row])
            except StoreUnavailable:
                raise  # an outage in the middle: the writer exits, and its successor gets the batches again
            except Exception as exc:
                refused.add(index)
                log.error("request log: row of request %s refused and dropped: %s", row[0], _first_line(exc))
        return refused

    def _send(self, ack: Ack) -> None:
        self._acks.write(self._codec.ack(ack))
        if not ack.ok:
            self._acks.flush()

    def _apply_retention(self) -> None:
        """One retention pass, on one gateway process at a time: every gateway's writer tries every
        ``retention_check_s``, and only the holder of the retention lease purges (its lease outlives two
        passes, so it keeps it by passing; if its gateway dies, another writer takes the lease at a later pass)."""
        assert self._store is not None
        now = datetime.now(UTC)
        try:
            leases = Leases(self._store.database)
            if not leases.acquire(RETENTION_LEASE, self._holder, ttl_s=2 * self._config.retention_check_s):
                return
            removed, blanked = self._store.purge(
                now - timedelta(days=self._config.retention_days),
                now - timedelta(days=self._config.body_retention_days),
            )
        except Exception as exc:
            log.warning("request log: retention pass failed: %s", exc)
            return
        if removed or blanked:
            log.info("request log retention: %d rows removed, %d bodies cleared", removed, blanked)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m modelyard.observability.record_writer CONFIG_JSON", file=sys.stderr)
        return 2
    config = msgspec.json.decode(args[0], type=WriterConfig)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _yield_to_the_gateway()
    configure_logging(config.log_level, config.log_format)
    store = None
    if config.store:
        store = RequestLogStore(Database(os.environ[DATABASE_URL_ENV]))
    writer = RecordWriter(config, store, sys.stdout.buffer, sys.stderr.fileno())
    # Everything loaded so far lives as long as the process: keep it out of every garbage collection, which
    # otherwise walks SQLAlchemy's whole object graph each time batches push records into the oldest generation.
    gc.freeze()
    try:
        writer.run(sys.stdin.fileno())
    except BrokenPipeError:  # the gateway is gone: nobody is left to acknowledge to
        return 1
    return 0


def _yield_to_the_gateway() -> None:
    """SCHED_BATCH: the same share of the CPU as any process, but a wake-up never preempts the one running. The
    gateway's pipe write wakes this process, and Linux prefers to run a woken process on the waker's core; as a
    normal process it then preempted the gateway's event loop, which measured +30 % CPU per request for the
    gateway (cache and context switches) even with a core idle. As a batch process it waits for, or moves to,
    the idle core."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError as exc:
            log.debug("SCHED_BATCH not available: %s", exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
