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

import logging
import os
import select
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import msgspec

from modelyard.observability.logs import configure_logging
from modelyard.observability.record_frames import Ack, BatchCodec, read_frame
from modelyard.observability.request_lines import RequestLineFormatter, write_lines
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_record import RequestRecord
from modelyard.store.database import Database

log = logging.getLogger("modelyard.request_log")

DATABASE_URL_ENV = "MODELYARD_RECORD_WRITER_DATABASE_URL"  # passed in the environment: never in argv (ps)


class WriterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    log_level: str = "info"
    log_format: str = "text"
    lines: bool = True  # write one log line per request
    store: bool = True  # insert rows (the database URL is in DATABASE_URL_ENV)
    retention_days: float = 30.0
    body_retention_days: float = 7.0
    retention_check_s: float = 3600.0
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

    def run(self, batches: BinaryIO) -> None:
        """Until the gateway closes the pipe: a batch when one arrives, retention when it is due."""
        while True:
            if self._store is not None and time.monotonic() >= self._next_retention:
                self._next_retention = time.monotonic() + self._config.retention_check_s
                self._apply_retention()
            wait_s = max(0.0, self._next_retention - time.monotonic()) if self._store is not None else None
            readable, _, _ = select.select([batches], [], [], wait_s)
            if not readable:
                continue
            payload = read_frame(batches)
            if payload is None:
                return
            seq, records = self._codec.read_batch(payload)
            self.write(seq, records)

    def write(self, seq: int, records: list[RequestRecord]) -> None:
        if self._formatter is not None:
            write_lines(self._lines_fd, [self._formatter.format(record) for record in records])
        failures = 0
        while self._store is not None:
            try:
                self._store.insert(records)
                break
            except Exception as exc:  # the database is down or refused: report, keep the batch, try again
                failures += 1
                log.warning("request log: writing a batch of %d failed (attempt %d): %s", len(records), failures, exc)
                self._send(Ack(seq, ok=False, message=str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                time.sleep(min(self._config.max_backoff_s, 0.5 * 2 ** (failures - 1)))
        self._send(Ack(seq, ok=True))

    def _send(self, ack: Ack) -> None:
        self._acks.write(self._codec.ack(ack))
        self._acks.flush()

    def _apply_retention(self) -> None:
        assert self._store is not None
        now = datetime.now(UTC)
        try:
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
    configure_logging(config.log_level, config.log_format)
    store = None
    if config.store:
        store = RequestLogStore(Database(os.environ[DATABASE_URL_ENV]))
    writer = RecordWriter(config, store, sys.stdout.buffer, sys.stderr.fileno())
    try:
        # Unbuffered: select() must see every byte that has not been read yet, none hidden in a Python buffer.
        writer.run(os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False))
    except BrokenPipeError:  # the gateway is gone: nobody is left to acknowledge to
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
