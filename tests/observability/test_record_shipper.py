"""The record writer process: lines and rows written beside the gateway, nothing lost when it dies."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import resource
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psutil
import pytest

from metric_samples import metric_value
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.record_frames import Ack, BatchCodec, FrameBuffer, FrameError
from modelyard.observability.record_shipper import RecordShipper, ShipperTargets, ShipperTuning
from modelyard.observability.request_lines import RequestLineFormatter, write_lines
from modelyard.observability.request_log_store import RequestLogStore, RequestQuery
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.request_row import COLUMNS, RowBuilder
from modelyard.store.database import Database


def _record(n: int) -> RequestRecord:
    now = time.perf_counter()
    return RequestRecord(
        request_id=f"req-{n}",
        trace_id=f"{n:032x}",
        endpoint="chat",
        received=now,
        received_at=time.time(),
        route="gemma",
        model="gemma",
        version="1",
        target="gemma:1",
        status=200,
        dispatched=now + 0.001,
        finished=now + 0.25,
        prompt_tokens=7,
        completion_tokens=3,
        attempts=1,
        request_body=b'{"prompt": "hi"}' if n % 2 else None,
    )


async def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition(), "condition not met in time"


def test_frames_round_trip_in_any_pieces_and_refuse_garbage() -> None:
    codec = BatchCodec()
    records = [_record(1), _record(2)]
    stream = codec.batch(7, records) + codec.ack(Ack(7, ok=True)) + codec.batch(8, [])
    buffer, frames = FrameBuffer(), []
    for start in range(0, len(stream), 5):  # pieces that split headers and payloads
        frames += buffer.feed(stream[start : start + 5])
    assert not buffer.partial and len(frames) == 3
    seq, decoded = codec.read_batch(frames[0])
    assert seq == 7 and decoded == records and decoded[0].request_body == b'{"prompt": "hi"}'
    assert codec.read_ack(frames[1]) == Ack(7, ok=True)
    assert codec.read_batch(frames[2]) == (8, [])
    assert FrameBuffer().feed(b"\x10\x00\x00\x00abc") == []  # cut short: waits for the rest
    with pytest.raises(FrameError):
        FrameBuffer().feed(b"\xff\xff\xff\xff")  # a length no frame has
    with pytest.raises(FrameError):
        codec.read_batch(b"\x93\x01\x02\x03")


def test_lines_are_written_whole_and_in_pipe_sized_chunks() -> None:
    import threading

    read_end, write_end = os.pipe()
    lines = b"".join((f'{{"n": {n}, "pad": "{"x" * (n * 37 % 900)}"}}\n').encode() for n in range(200))
    lines += b"y" * 10_000 + b"\n" + b'{"last": true}\n'  # a line longer than PIPE_BUF goes out on its own
    chunks: list[bytes] = []

    def read() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as reader:
            while chunk := reader.read(65536):
                chunks.append(chunk)

    thread = threading.Thread(target=read)
    thread.start()
    write_lines(write_end, lines)
    os.close(write_end)
    thread.join(10)
    assert b"".join(chunks) == lines


def test_row_and_line_carry_every_column_of_the_table() -> None:
    """The row is positional: a column added to the table without the row (or the line) fails here."""
    record = _record(3)
    record.first_token, record.last_token, record.completion_tokens = record.received + 0.05, record.received + 0.2, 4
    record.shadow_of, record.outputs_match, record.similarity = "req-0", False, 0.5
    record.key_id = "k123"
    row = RowBuilder(timestamp_as_text=True).row(record)
    assert len(row) == len(COLUMNS)
    values = dict(zip(COLUMNS, row, strict=True))
    assert values["request_id"] == "req-3" and values["status"] == 200 and values["version"] == "1"
    assert values["duration_ms"] == 250.0 and values["queued_ms"] == 1.0 and values["ttft_ms"] == 50.0
    assert values["tpot_ms"] == 50.0 and values["completion_tokens"] == 4 and values["similarity"] == 0.5
    assert values["key_id"] == "k123" and values["outputs_match"] is False
    stored = datetime.fromisoformat(values["received_at"])
    assert stored == datetime.fromtimestamp(record.received_at, UTC)  # the text SQLite's adapter would write
    buffer = bytearray()
    RequestLineFormatter("json").append(buffer, record, row)
    line = json.loads(buffer)
    assert set(line) == {"ts", "level", "logger", "msg"} | set(COLUMNS) - {
        "received_at",
        "request_body",
        "response_body",
        "key_id",  # who asked is kept for feedback, not printed in every log line
    }
    assert {name: line[name] for name in line if name in values} == {
        name: value for name, value in values.items() if name in line
    }
    text = bytearray()
    RequestLineFormatter("text").append(text, record, row)
    assert text.endswith(b"similarity=0.5\n") and b"request_id=req-3 trace_id=" in text


def test_rows_and_json_lines_come_from_the_writer_process(tmp_path, capfd: pytest.CaptureFixture[str]) -> None:
    from modelyard.store import migrate

    database = Database(f"sqlite:///{tmp_path / 'requests.db'}")
    migrate.upgrade(database)

    async def scenario() -> GatewayMetrics:
        metrics = GatewayMetrics()
        shipper = RecordShipper(
            ShipperTargets(lines=True, database=database.url, log_level="info", log_format="json"),
            metrics,
            ShipperTuning(batch_size=100, flush_interval_s=0.05),
        )
        await shipper.start()
        for n in range(1000):
            shipper.offer(_record(n))
            if n % 100 == 0:
                await asyncio.sleep(0)
        await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 1000)
        assert shipper.depth() == 0
        await shipper.stop()
        return metrics

    metrics = asyncio.run(asyncio.wait_for(scenario(), 60))
    rows = RequestLogStore(database).query(RequestQuery(limit=0, with_bodies=True))
    assert {row["request_id"] for row in rows} == {f"req-{n}" for n in range(1000)}
    assert next(r for r in rows if r["request_id"] == "req-1")["request_body"] == '{"prompt": "hi"}'
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if '"modelyard.requests"' in line]
    assert sorted(line["request_id"] for line in lines) == sorted(f"req-{n}" for n in range(1000))
    assert lines[0]["status"] == 200 and lines[0]["duration_ms"] == pytest.approx(250, abs=1)
    assert metric_value(metrics, "modelyard_request_log_dropped_total") == 0
    database.dispose()


def test_a_killed_writer_is_replaced_and_its_unacknowledged_batch_sent_again(tmp_path) -> None:
    """The writer is blocked mid-insert (the test holds SQLite's write lock) and killed: its successor writes the
    batch, so every record lands exactly once."""
    from modelyard.store import migrate

    path = tmp_path / "requests.db"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")

    async def scenario() -> GatewayMetrics:
        metrics = GatewayMetrics()
        shipper = RecordShipper(
            ShipperTargets(lines=False, database=database.url),
            metrics,
            ShipperTuning(batch_size=50, flush_interval_s=0.05),
        )
        await shipper.start()
        for n in range(120):
            shipper.offer(_record(n))
        await asyncio.sleep(1.0)  # sent, and stuck behind the lock
        assert shipper.depth() == 120
        first = shipper._process
        assert first is not None and first.returncode is None
        first.send_signal(signal.SIGKILL)
        await _until(
            lambda: (
                shipper._process is not first
                and metric_value(metrics, "modelyard_request_log_writer_restarts_total") == 1
            )
        )
        lock.execute("ROLLBACK")
        await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 120)
        assert shipper.depth() == 0
        await shipper.stop()
        return metrics

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        lock.close()
    rows = RequestLogStore(database).query(RequestQuery(limit=0))
    assert sorted(row["request_id"] for row in rows) == sorted(f"req-{n}" for n in range(120))
    database.dispose()


def test_stop_waits_for_the_writer_to_finish_what_was_queued(tmp_path) -> None:
    from modelyard.store import migrate

    database = Database(f"sqlite:///{tmp_path / 'requests.db'}")
    migrate.upgrade(database)

    async def scenario() -> None:
        shipper = RecordShipper(
            ShipperTargets(lines=False, database=database.url),
            GatewayMetrics(),
            ShipperTuning(batch_size=5000, flush_interval_s=60),  # nothing is sent before stop()
        )
        await shipper.start()
        for n in range(3000):
            shipper.offer(_record(n))
        await shipper.stop()
        assert shipper.depth() == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert len(RequestLogStore(database).query(RequestQuery(limit=0))) == 3000
    database.dispose()


@pytest.mark.postgres
def test_a_row_the_database_refuses_is_dropped_and_counted_without_blocking_the_rest(postgres_schema: str) -> None:
    """PostgreSQL refuses a version longer than its column: that row is dropped (counted), its neighbours stored."""
    from modelyard.store import migrate

    from conftest import postgres_schema_url

    database = Database(postgres_schema_url(postgres_schema))
    migrate.upgrade(database)

    async def scenario() -> GatewayMetrics:
        metrics = GatewayMetrics()
        shipper = RecordShipper(
            ShipperTargets(lines=False, database=database.url),
            metrics,
            ShipperTuning(batch_size=10, flush_interval_s=0.05),
        )
        await shipper.start()
        for n in range(10):
            record = _record(n)
            if n == 4:
                record.version = "v" * 40  # the column holds 16
            shipper.offer(record)
        await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 9)
        assert shipper.depth() == 0
        for n in range(10, 15):  # the writer is not stuck behind the bad row
            shipper.offer(_record(n))
        await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 14)
        await shipper.stop()
        return metrics

    metrics = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert metric_value(metrics, "modelyard_request_log_dropped_total") == 1
    stored = {row["request_id"] for row in RequestLogStore(database).query(RequestQuery(limit=0))}
    assert stored == {f"req-{n}" for n in range(15) if n != 4}
    database.dispose()


class _SqliteAway:
    """The SQLite database held by another connection's write transaction (a stuck CLI, a backup): every insert
    waits out the busy timeout and fails "locked"; readers go on (WAL)."""

    def __init__(self, database: Database) -> None:
        self.url = database.url
        self._path = database.url.database
        self._lock: sqlite3.Connection | None = None

    def away(self) -> None:
        self._lock = sqlite3.connect(self._path, isolation_level=None)
        self._lock.execute("BEGIN IMMEDIATE")

    def back(self) -> None:
        assert self._lock is not None
        self._lock.execute("ROLLBACK")
        self._lock.close()


class _PostgresAway:
    """PostgreSQL behind a relay the test cuts: connections reset, new ones refused, like a host off the network."""

    def __init__(self, database: Database) -> None:
        from tcp_proxy import TcpProxy

        url = database.url
        self._proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
        self.url = url.set(host="127.0.0.1", port=self._proxy.port)

    def away(self) -> None:
        self._proxy.stop()

    def back(self) -> None:
        self._proxy.start(port=self._proxy.port)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_rows_wait_while_the_database_is_away_the_excess_is_dropped_and_counted_and_the_rest_written(
    backend: str, request: pytest.FixtureRequest, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """The bound covers everything not yet written: with the database away, ``capacity`` records wait (sent to the
    writer, which retries), the ones beyond are dropped at once and counted, logged once; when the database is
    back the waiting ones are written, and nothing else."""
    from modelyard.store import migrate

    if backend == "postgresql":
        from conftest import postgres_schema_url

        database = Database(postgres_schema_url(request.getfixturevalue("postgres_schema")))
    else:
        database = Database(f"sqlite:///{tmp_path / 'requests.db'}")
    migrate.upgrade(database)
    outage = _SqliteAway(database) if backend == "sqlite" else _PostgresAway(database)

    async def scenario() -> GatewayMetrics:
        metrics = GatewayMetrics()
        shipper = RecordShipper(
            ShipperTargets(lines=False, database=outage.url),
            metrics,
            ShipperTuning(capacity=50, batch_size=10, flush_interval_s=0.05),
        )
        await shipper.start()
        for n in range(5):
            shipper.offer(_record(n))
        await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 5)
        outage.away()
        for n in range(5, 125):  # never waits, never raises: 50 wait, 70 are dropped
            shipper.offer(_record(n))
        assert shipper.depth() == 50
        assert metric_value(metrics, "modelyard_request_log_dropped_total") == 70
        await asyncio.sleep(3.0)  # the writer is retrying; nothing more is lost meanwhile
        assert shipper.depth() == 50
        assert metric_value(metrics, "modelyard_request_log_written_total") == 5
        outage.back()
        await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 55, 60)
        assert shipper.depth() == 0
        for n in range(125, 130):
            shipper.offer(_record(n))
        await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 60)
        await shipper.stop()
        return metrics

    with caplog.at_level(logging.WARNING, logger="modelyard.request_log"):
        metrics = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert metric_value(metrics, "modelyard_request_log_dropped_total") == 70
    stored = sorted(row["request_id"] for row in RequestLogStore(database).query(RequestQuery(limit=0)))
    assert stored == sorted(f"req-{n}" for n in [*range(55), *range(125, 130)])
    messages = [record.getMessage() for record in caplog.records]
    assert sum("dropping new records" in m for m in messages) == 1  # logged once, not 70 times
    assert sum("70 records were dropped meanwhile" in m for m in messages) == 1
    database.dispose()


class _FullDisk:
    """A file system with no room left: a 4 MiB tmpfs filled to the last byte (root), else — where mounting is
    not allowed — the writer process's file-size limit (``RLIMIT_FSIZE``) lowered to the database's size, so its
    writes fail the way they do on a full disk (SQLite: "database or disk is full" / "disk I/O error")."""

    def __init__(self, root) -> None:
        self.path = root / "disk"
        self.path.mkdir()
        self.mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(self.path)], capture_output=True
        ).returncode == 0  # fmt: skip
        self._filler = self.path / "filler"

    def fill(self, writer_pid: int) -> None:
        if self.mounted:
            with self._filler.open("wb", buffering=0) as handle:
                for size in (65536, 4096, 1):  # to the last byte
                    with contextlib.suppress(OSError):
                        while True:
                            handle.write(b"\0" * size)
        else:
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            psutil.Process(writer_pid).rlimit(psutil.RLIMIT_FSIZE, (1, hard))

    def free(self, writer_pid: int) -> None:
        if self.mounted:
            self._filler.unlink()
        else:
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            psutil.Process(writer_pid).rlimit(psutil.RLIMIT_FSIZE, (hard, hard))

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


def test_the_request_log_disk_full_drops_counted_logs_once_and_recovers(
    tmp_path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A full disk is an outage like the database going away (before: each row was "refused" one by one, dropped
    and logged one line per row, though the same rows go in once there is room)."""
    from modelyard.store import migrate

    disk = _FullDisk(tmp_path)
    try:
        path = disk.path / "requests.db"
        database = Database(f"sqlite:///{path}")
        migrate.upgrade(database)
        database.dispose()

        async def scenario() -> GatewayMetrics:
            metrics = GatewayMetrics()
            shipper = RecordShipper(
                ShipperTargets(lines=False, database=database.url),
                metrics,
                ShipperTuning(capacity=100, batch_size=10, flush_interval_s=0.05),
            )
            await shipper.start()
            for n in range(10):
                shipper.offer(_record(n))
            await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 10)
            writer = shipper._process
            assert writer is not None
            checkpoint = sqlite3.connect(path)  # an empty WAL: the next rows need new room on the disk
            checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            checkpoint.close()
            disk.fill(writer.pid)
            for n in range(10, 160):
                record = _record(n)
                record.request_body = b"x" * 4096  # more than any page the database could reuse
                shipper.offer(record)
            assert shipper.depth() == 100
            assert metric_value(metrics, "modelyard_request_log_dropped_total") == 50
            await _until(lambda: metric_value(metrics, "modelyard_request_log_write_errors_total") >= 1)
            await asyncio.sleep(2.0)
            assert shipper.depth() == 100 and shipper._process is writer  # waiting, not crashing
            assert metric_value(metrics, "modelyard_request_log_written_total") == 10
            disk.free(writer.pid)
            await _until(lambda: metric_value(metrics, "modelyard_request_log_written_total") == 110, 60)
            await shipper.stop()
            return metrics

        with caplog.at_level(logging.WARNING, logger="modelyard.request_log"):
            metrics = asyncio.run(asyncio.wait_for(scenario(), 120))
        assert metric_value(metrics, "modelyard_request_log_dropped_total") == 50
        stored = RequestLogStore(Database(database.url)).query(RequestQuery(limit=0))
        assert sorted(row["request_id"] for row in stored) == sorted(f"req-{n}" for n in range(110))
        writer_log = capfd.readouterr().err
        failures = [line for line in writer_log.splitlines() if "rows failed, retrying until it works" in line]
        assert len(failures) == 1, writer_log  # once for the outage, not once a row or a retry
        assert "disk is full" in failures[0] or "disk I/O error" in failures[0]
        assert "refused and dropped" not in writer_log
        assert writer_log.count("writing again after") == 1
        assert sum("dropping new records" in r.getMessage() for r in caplog.records) == 1
    finally:
        disk.close()


def test_request_lines_a_full_disk_refuses_are_lost_without_stopping_the_rows(tmp_path) -> None:
    """The log lines' file descriptor on a full disk (``/dev/full``: every write fails ENOSPC): the writer keeps
    storing rows and acknowledging batches instead of dying on every batch (and being restarted in a loop)."""
    from modelyard.observability.record_writer import RecordWriter, WriterConfig
    from modelyard.store import migrate

    database = Database(f"sqlite:///{tmp_path / 'requests.db'}")
    migrate.upgrade(database)
    acks = io.BytesIO()
    with open("/dev/full", "wb", buffering=0) as full:
        writer = RecordWriter(WriterConfig(), RequestLogStore(database), acks, full.fileno())
        writer.take(1, [_record(1), _record(2)])
        writer.take(2, [_record(3)])
        writer.flush()
    assert writer.lost_lines == 3
    frames = FrameBuffer().feed(acks.getvalue())
    assert [BatchCodec().read_ack(frame) for frame in frames] == [Ack(1, ok=True), Ack(2, ok=True)]
    assert len(RequestLogStore(database).query(RequestQuery(limit=0))) == 3
    database.dispose()
