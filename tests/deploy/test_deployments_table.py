"""The shared deployments configuration over the real PostgreSQL: what one replica applies, another serves within a
second, without restarting; a newer file at start-up is stored, a stale one is not."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from modelyard.deploy.deployments import DeploymentsManager
from modelyard.deploy.deployments_table import DeploymentsTable
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.config import DeploymentsError, DeploymentsSpec
from modelyard.store import migrate
from modelyard.store.database import Database

from conftest import postgres_schema_url

pytestmark = pytest.mark.postgres

CONFIG = "routes:\n  live:\n    targets:\n      one: {{url: 'http://127.0.0.1:9/{name}', weight: 1}}\n"


class Served:
    """What a control plane is given: the spec it serves (a real one validates registry references first)."""

    def __init__(self) -> None:
        self.deployments = DeploymentsSpec()
        self.deployments_source = "<none>"
        self.applied: list[str] = []
        self.changed = asyncio.Event()

    async def apply_deployments(self, spec: DeploymentsSpec, source: str, fresh: bool = True) -> None:
        self.deployments, self.deployments_source = spec, source
        self.applied.append(next(iter(spec.routes["live"].targets["one"].urls())))
        self.changed.set()


@pytest.fixture
def database(postgres_schema: str) -> Iterator[Database]:
    database = Database(postgres_schema_url(postgres_schema))
    migrate.upgrade(database)
    yield database
    database.dispose()


def manager(database: Database, tmp_path: Path, path: Path | None = None) -> tuple[DeploymentsManager, Served]:
    served = Served()
    deployments = DeploymentsManager(
        served,
        RoutingMetrics(CollectorRegistry()),
        path,
        tmp_path / f"default-{id(served)}.yaml",
        table=DeploymentsTable(database),
        table_poll_s=0.05,
    )
    deployments.load_initial()
    return deployments, served


def test_a_change_through_one_replica_is_served_by_the_other_within_a_second(
    database: Database, tmp_path: Path
) -> None:
    async def scenario() -> None:
        one, served_one = manager(database, tmp_path)
        two, served_two = manager(database, tmp_path)
        await one.start()
        await two.start()
        try:
            status = await one.replace(CONFIG.format(name="a"), "alice")
            assert status["version"] == 1
            await asyncio.wait_for(served_two.changed.wait(), 1.0)  # in effect on the other replica within 1 s
            assert served_two.applied == ["http://127.0.0.1:9/a"]
            assert two.status()["version"] == 1 and two.current_text() == CONFIG.format(name="a")
            served_one.changed.clear()
            await two.replace(CONFIG.format(name="b"), "bob")
            await asyncio.wait_for(served_one.changed.wait(), 1.0)
            assert served_one.applied == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
            with pytest.raises(DeploymentsError):  # refused as a whole: nothing stored, nothing moves
                await one.replace("routes: {live: {targets: {}}}", "mallory")
            assert DeploymentsTable(database).version() == 2
        finally:
            await one.stop()
            await two.stop()

    asyncio.run(scenario())


def test_a_newer_file_is_stored_at_start_up_and_a_stale_one_is_not(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "deployments.yaml"
    path.write_text(CONFIG.format(name="file"))
    first, served = manager(database, tmp_path, path)
    assert served.deployments.routes["live"].targets["one"].url == "http://127.0.0.1:9/file"
    stored = DeploymentsTable(database).read()
    assert stored is not None and stored.version == 1 and stored.updated_by == "start-up"
    asyncio.run(first.replace(CONFIG.format(name="api"), "alice"))  # writes the file and the table
    other = tmp_path / "stale.yaml"
    other.write_text(CONFIG.format(name="stale"))
    os.utime(other, (1_000_000_000, 1_000_000_000))  # a copy older than the stored configuration
    _, served = manager(database, tmp_path, other)
    assert served.deployments.routes["live"].targets["one"].url == "http://127.0.0.1:9/api"
    assert DeploymentsTable(database).version() == 2
