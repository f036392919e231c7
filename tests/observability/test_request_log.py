"""The request log on SQLite and PostgreSQL: writes off the hot path, drops counted, queries, retention."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from metric_samples import metric_value
from modelyard.observability.body_policy import MAX_BODY_BYTES, TRUNCATED, BodyPolicy, BodyPolicyError
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.record_shipper import RecordShipper, ShipperTargets, ShipperTuning
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_query import QueryError, build_query
from modelyard.observability.request_record import RequestRecord
from modelyard.store.database import Database

from conftest import postgres_schema_url

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _record(n: int, route: str = "gemma", status: int = 200, at: datetime = NOW) -> RequestRecord:
    record = RequestRecord(
        request_id=f"req-{n}",
        trace_id=f"{n:032x}",
        endpoint="chat",
        received=100.0,
        received_at=at.timestamp(),
        route=route,
        model="gemma",
        version="1",
        target="gemma:1",
        status=status,
        error_type="" if status < 400 else "upstream_error",
        dispatched=100.001,
        finished=100.2,
        prompt_tokens=10,
        completion_tokens=5,
        attempts=1,
    )
    return record


def test_store_filters_pages_and_exports_newest_first(database: Database) -> None:
    store = RequestLogStore(database)
    store.insert([_record(n, route="gemma@canary" if n % 3 == 0 else "gemma", status=200 if n % 4 else 502,
                          at=NOW + timedelta(seconds=n)) for n in range(1, 2501)])  # fmt: skip
    newest = store.query(build_query({"limit": "3"}, now=NOW))
    assert [r["request_id"] for r in newest] == ["req-2500", "req-2499", "req-2498"]
    canary = store.query(build_query({"route": "gemma@canary", "status": "5xx", "limit": "0"}, now=NOW))
    assert {r["request_id"] for r in canary} == {f"req-{n}" for n in range(1, 2501) if n % 3 == 0 and n % 4 == 0}
    window = build_query({"since": (NOW + timedelta(seconds=100)).isoformat(), "until": "2026-11-23T12:03:20Z",
                          "limit": "0"})  # fmt: skip
    assert len(list(store.iter(window, chunk=7))) == 100  # seconds 100..199, read in small pages
    assert "request_body" not in newest[0]


def test_retention_removes_old_rows_and_blanks_bodies_sooner(database: Database) -> None:
    store = RequestLogStore(database)
    old, middle, fresh = _record(1, at=NOW - timedelta(days=40)), _record(2, at=NOW - timedelta(days=10)), _record(3)
    for record in (old, middle, fresh):
        record.request_body, record.response_body = b'{"prompt": "secret"}', b"answer"
    store.insert([old, middle, fresh])
    assert store.purge(NOW - timedelta(days=30), NOW - timedelta(days=7)) == (1, 1)
    rows = {r["request_id"]: r for r in store.query(build_query({"bodies": "true", "limit": "0"}, now=NOW))}
    assert set(rows) == {"req-2", "req-3"}
    assert rows["req-2"]["request_body"] is None and rows["req-3"]["request_body"] == '{"prompt": "secret"}'


@pytest.mark.postgres
def test_writer_batches_in_the_background_and_counts_drops_instead_of_blocking(postgres_schema: str) -> None:
    """A real outage (the TCP path to PostgreSQL cut): offers stay instant, the queue absorbs, then drops count.
    The rows are written by the record writer process, through the proxy."""
    from modelyard.store import migrate

    from conftest import POSTGRES_URL
    from tcp_proxy import TcpProxy

    target = POSTGRES_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = target.split(":")
    proxy = TcpProxy(host, int(port)).start()
    url = postgres_schema_url(postgres_schema).replace(target, f"127.0.0.1:{proxy.port}")

    async def scenario() -> None:
        database = Database(url)
        migrate.upgrade(database)
        metrics = GatewayMetrics()
        settings = ShipperTuning(capacity=50, batch_size=10, flush_interval_s=0.05)
        writer = RecordShipper(ShipperTargets(lines=False, database=database.url), metrics, settings)
        await writer.start()
        started = time.perf_counter()
        for n in range(40):
            writer.offer(_record(n))
        assert time.perf_counter() - started < 0.05  # offering is an append, not a write
        for _ in range(200):
            if metric_value(metrics, "modelyard_request_log_written_total") == 40:
                break
            await asyncio.sleep(0.05)
        assert metric_value(metrics, "modelyard_request_log_written_total") == 40

        proxy.stop()
        started = time.perf_counter()
        for n in range(100):
            writer.offer(_record(1000 + n))
            await asyncio.sleep(0)
        assert time.perf_counter() - started < 1.0
        await asyncio.sleep(1.0)
        assert writer.depth() <= 50
        assert metric_value(metrics, "modelyard_request_log_dropped_total") >= 50
        assert metric_value(metrics, "modelyard_request_log_write_errors_total") >= 1
        await asyncio.wait_for(writer.stop(timeout_s=2), 30)
        database.dispose()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        proxy.stop()


def test_body_rules_sample_deterministically_and_clip() -> None:
    policy = BodyPolicy.parse(["gemma@canary=1", "gemma*=0.25"])
    assert policy.keep_bodies("gemma@canary", "any")
    assert not policy.keep_bodies("other", "any")
    kept = sum(policy.keep_bodies("gemma", f"req-{n}") for n in range(4000))
    assert 850 < kept < 1150  # about a quarter
    assert policy.keep_bodies("gemma", "req-7") == policy.keep_bodies("gemma", "req-7")
    for bad in ("gemma", "gemma=2", "=0.5", "gemma=x"):
        with pytest.raises(BodyPolicyError):
            BodyPolicy.parse([bad])
    from modelyard.observability.body_policy import clip_body

    assert clip_body(b"x" * (MAX_BODY_BYTES + 10)).endswith(TRUNCATED)


def test_query_filters_are_validated() -> None:
    assert build_query({"since": "2h"}, now=NOW).since == NOW - timedelta(hours=2)
    assert build_query({"status": "5xx"}, now=NOW).status == "5xx"
    for filters, param in (({"since": "yesterday"}, "since"), ({"status": "ok"}, "status"),
                           ({"limit": "-1"}, "limit"), ({"colour": "red"}, "colour")):  # fmt: skip
        with pytest.raises(QueryError) as caught:
            build_query(filters, now=NOW)
        assert caught.value.param == param


def test_retention_runs_on_one_gateway_at_a_time_under_its_lease(database: Database) -> None:
    """Every gateway process's record writer tries a retention pass; the one holding the retention lease purges,
    the others skip (a DELETE over the whole log once, not once per replica)."""
    import io

    from modelyard.observability.record_writer import RETENTION_LEASE, RecordWriter, WriterConfig
    from modelyard.store.leases import Leases

    store = RequestLogStore(database)
    store.insert([_record(1, at=datetime.now(UTC) - timedelta(days=40))])
    first, second = (RecordWriter(WriterConfig(), store, io.BytesIO(), 2) for _ in range(2))
    second._holder = "other-host:1:writer"  # the second gateway's writer
    purged: list[str] = []
    original = store.purge
    store.purge = lambda *cutoffs: (purged.append("purge"), original(*cutoffs))[1]  # type: ignore[method-assign]
    first._apply_retention()
    second._apply_retention()
    first._apply_retention()  # the holder renews by passing
    assert purged == ["purge", "purge"]
    lease = Leases(database).read(RETENTION_LEASE)
    assert lease is not None and lease.holder == first._holder
    assert store.query(build_query({"limit": "0"}, now=datetime.now(UTC))) == []
