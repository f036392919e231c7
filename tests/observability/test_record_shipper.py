"""The record writer process: lines and rows written beside the gateway, nothing lost when it dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

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
