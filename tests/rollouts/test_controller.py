"""The rollout controller over a real database (SQLite and PostgreSQL): request-log rows with known effects in,
decisions with their numbers out — rollback naming the metric, advance, promotion through the eval gates (and a
refused gate pausing instead), a restarted controller resuming at its step, one rollout per route."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelyard.audit.log import AuditLog
from modelyard.deploy.rollout_split import TrafficSplit
from modelyard.evals.gates import parse_gates
from modelyard.evals.storage import EvalStore
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_record import RequestRecord
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.registration import Declared, register_file
from modelyard.registry.store import RegistryStore
from modelyard.roles.stores import registry_store
from modelyard.rollouts.controller import RolloutController, webhook_body
from modelyard.rollouts.plan import parse_plan
from modelyard.rollouts.store import RolloutConflict, RolloutStore
from modelyard.store import migrate
from modelyard.store.database import Database

from conftest import postgres_schema_url
from registry.gguf_files import write_gguf


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'rollouts.db'}")
    else:
        db = Database(postgres_schema_url(request.getfixturevalue("postgres_schema")))
    migrate.upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def registry(database: Database, tmp_path: Path) -> RegistryStore:
    store = registry_store(database)
    checker = IntegrityChecker(tmp_path / "integrity")
    for seed in (1, 2):
        register_file(store, checker, write_gguf(tmp_path / f"m{seed}.gguf", seed=seed), "tiny", Declared(), "alice")
    store.move_alias("tiny", "production", 1, "alice")
    return store


def _traffic(database: Database, share: float, slowdown: float, n: int = 400, errors: float = 0.0) -> None:
    """Served requests on route ``tiny``: version 2 gets ``share`` of them, ``slowdown`` slower."""
    rng = random.Random(7)
    now, clock = time.time(), time.perf_counter()
    records = []
    for i in range(n):
        candidate = rng.random() < share
        latency = rng.lognormvariate(-1.0, 0.3) * ((1 + slowdown) if candidate else 1.0)
        failed = rng.random() < errors and candidate
        records.append(
            RequestRecord(
                request_id=f"r{i}-{rng.random()}",
                trace_id="0" * 32,
                endpoint="chat",
                received=clock,
                received_at=now,
                route="tiny",
                model="tiny",
                version="2" if candidate else "1",
                status=503 if failed else 200,
                finished=clock + latency,
                completion_tokens=8,
            )
        )
    RequestLogStore(database).insert(records)


def _start(store: RolloutStore, **plan: object) -> int:
    defaults: dict[str, object] = {"steps": [50, 100], "guardrails": {"latency": 0.3}, "min_sample": 30}
    return store.start("tiny", "tiny", 1, 2, parse_plan({**defaults, **plan}), "test").id


def test_a_slower_candidate_is_rolled_back_naming_the_metric(database: Database, registry: RegistryStore) -> None:
    store = RolloutStore(database)
    rollout_id = _start(store)
    assert store.splits() == (TrafficSplit("tiny", "tiny", 1, 2, 50.0, None),)
    _traffic(database, 0.5, slowdown=1.0)
    acted = RolloutController(store, registry, "controller").tick()
    assert [a.decision.action for a in acted] == ["rollback"]
    rollout = store.get(rollout_id)
    assert rollout.state == "rolled_back" and rollout.reason.startswith("guardrail breached: latency worse by +")
    numbers = store.decisions(rollout_id)[-1].numbers
    latency = numbers["comparisons"][0]
    assert latency["metric"] == "latency" and latency["breach"] and latency["effect"] > 0.5
    assert latency["control_n"] + latency["treatment_n"] == 400 and latency["p_value"] < 1e-6
    assert store.splits() == ()  # traffic goes back to control
    assert registry.get_model("tiny").production == 1
    assert [r.action for r in AuditLog(database).list(target=f"rollout/{rollout_id}")] == [
        "rollout.rollback",
        "rollout.start",
    ]
    body = webhook_body(acted[0])
    assert body["decision"]["action"] == "rollback" and body["rollout"]["state"] == "rolled_back"


def test_an_equal_candidate_is_promoted_through_the_gates(database: Database, registry: RegistryStore) -> None:
    store = RolloutStore(database)
    rollout_id = _start(store)
    _traffic(database, 0.5, slowdown=0.0, n=600)
    acted = RolloutController(store, registry, "controller").tick()
    assert [a.decision.action for a in acted] == ["promote"]
    assert store.get(rollout_id).state == "promoted"
    assert registry.get_model("tiny").production == 2
    assert store.decisions(rollout_id)[-1].numbers["alias_move"]["to_version"] == 2


def test_a_candidate_refused_by_its_eval_gate_is_paused_not_forced(database: Database, registry: RegistryStore) -> None:
    EvalStore(database).set_gates(
        "tiny", parse_gates({"gates": [{"type": "pass_rate", "suite": "smoke", "min": 0.9}]}, "t"), "a"
    )
    store = RolloutStore(database)
    rollout_id = _start(store)
    _traffic(database, 0.5, slowdown=0.0, n=600)
    RolloutController(store, registry, "controller").tick()
    rollout = store.get(rollout_id)
    assert rollout.state == "paused" and rollout.reason.startswith("promotion refused:")
    assert registry.get_model("tiny").production == 1


def test_a_restarted_controller_resumes_at_its_step(database: Database, registry: RegistryStore) -> None:
    store = RolloutStore(database)
    rollout_id = _start(store, steps=[20, 50, 100])
    _traffic(database, 0.2, slowdown=0.0, n=800)
    assert [a.decision.action for a in RolloutController(store, registry, "first").tick()] == ["advance"]
    after = store.get(rollout_id)
    assert (after.step, after.share, after.state) == (1, 50, "running")
    # A new controller (another process) reads the step and its window from the database: the old step's
    # requests are not in the new window, so it waits for the 50 % step's own.
    assert RolloutController(RolloutStore(database), registry, "second").tick() == []
    _traffic(database, 0.5, slowdown=0.0, n=600)
    assert [a.decision.action for a in RolloutController(store, registry, "second").tick()] == ["promote"]


def test_inconclusive_at_the_maximum_duration_pauses(database: Database, registry: RegistryStore) -> None:
    store = RolloutStore(database)
    rollout_id = _start(store, guardrails={"latency": 0.001}, step_max_s=5, look_s=1)
    _traffic(database, 0.5, slowdown=0.0, n=200)
    later = datetime.now(UTC) + timedelta(seconds=10)
    assert [a.decision.action for a in RolloutController(store, registry, "c").tick(later)] == ["pause"]
    assert store.get(rollout_id).reason.startswith("inconclusive at the maximum duration")


def test_one_active_rollout_per_route(database: Database, registry: RegistryStore) -> None:
    store = RolloutStore(database)
    _start(store)
    with pytest.raises(RolloutConflict, match="already has an active rollout"):
        _start(store)
    with pytest.raises(RolloutConflict, match="already what"):
        store.start("other", "tiny", 1, 1, parse_plan({}), "test")
