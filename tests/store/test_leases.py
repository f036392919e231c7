"""Leases on SQLite and PostgreSQL: one holder at a time, renewal keeps it, expiry or release hands it over, and a
keeper runs its job only while it holds the lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from modelyard.roles.stores import open_database
from modelyard.store.database import Database
from modelyard.store.leases import LeaseKeeper, Leases

from conftest import postgres_schema_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return open_database(f"sqlite:///{tmp_path / 'leases.db'}")
    return open_database(postgres_schema_url(request.getfixturevalue("postgres_schema")))


def test_one_holder_at_a_time_until_expiry_or_release(database: Database) -> None:
    leases = Leases(database)
    assert leases.acquire("job", "a", ttl_s=2)
    first = leases.read("job")
    assert first is not None and first.holder == "a"
    assert not leases.acquire("job", "b", ttl_s=2)  # held and not expired
    assert leases.acquire("job", "a", ttl_s=2)  # a renewal keeps the original acquisition time
    renewed = leases.read("job")
    assert renewed is not None and renewed.acquired_at == first.acquired_at and renewed.expires_at >= first.expires_at
    time.sleep(3.1)  # SQLite's clock has whole seconds
    assert leases.acquire("job", "b", ttl_s=2)  # expired: taken over
    assert not leases.acquire("job", "a", ttl_s=2)
    leases.release("job", "b")
    assert leases.acquire("job", "a", ttl_s=2)  # released: free at once
    assert leases.acquire("other", "b", ttl_s=2)  # leases are independent


def test_a_keeper_runs_its_job_only_while_it_holds_the_lease_and_another_takes_over(database: Database) -> None:
    runs: list[str] = []

    def job(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def work() -> None:
            runs.append(name)
            await asyncio.sleep(3600)

        return work

    async def scenario() -> None:
        a = LeaseKeeper(database, "controller", "a", ttl_s=1.5)
        b = LeaseKeeper(database, "controller", "b", ttl_s=1.5)
        task_a = asyncio.create_task(a.run(job("a")))
        await asyncio.sleep(0.5)
        task_b = asyncio.create_task(b.run(job("b")))
        await asyncio.sleep(1.5)
        assert a.held and not b.held and runs == ["a"]
        task_a.cancel()  # a clean stop releases the lease: b takes over within a renewal period
        await asyncio.gather(task_a, return_exceptions=True)
        for _ in range(40):
            if b.held:
                break
            await asyncio.sleep(0.1)
        assert b.held and runs == ["a", "b"]
        task_b.cancel()
        await asyncio.gather(task_b, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 30))
