"""Experiments over a real SQLite database through the CLI: created from YAML or flags (errors name the key and
change nothing), one per route (and none beside a rollout), results per treatment, stopped and audited."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.audit.log import AuditLog
from modelyard.cli.main import app
from modelyard.deploy.rollout_split import TrafficSplit
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_record import RequestRecord
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.registration import Declared, register_file
from modelyard.roles.stores import open_database, registry_store
from modelyard.rollouts.experiment_store import ExperimentStore

from registry.gguf_files import write_gguf

EXPERIMENT = """
name: shorter
route: tiny
control: tiny:1
treatments: [tiny:2, tiny:3]
allocation: [50, 25, 25]
primary: error_rate
guardrails: {latency: 0.5}
min_sample: 30
"""


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'experiments.db'}"
    monkeypatch.setenv("MODELYARD_DATABASE_URL", url)
    database = open_database(url)
    store = registry_store(database)
    checker = IntegrityChecker(tmp_path / "integrity")
    for seed in (1, 2, 3):
        register_file(store, checker, write_gguf(tmp_path / f"m{seed}.gguf", seed=seed), "tiny", Declared(), "alice")
    store.move_alias("tiny", "production", 1, "alice")
    database.dispose()
    return url


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output  # logs go to stderr


def test_an_experiment_splits_reports_and_stops(database_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "experiment.yaml"
    spec.write_text(EXPERIMENT)
    code, out = _run("experiments", "create", str(spec), "--json")
    assert code == 0, out
    assert json.loads(out)["allocation"] == [50.0, 25.0, 25.0]
    database = open_database(database_url)
    store = ExperimentStore(database)
    assert store.splits() == (TrafficSplit("tiny", "tiny", 1, 2, 25.0, None, ((3, 25.0),)),)
    code, out = _run("experiments", "create", str(spec))
    assert code == 4 and "already exists" in out
    code, out = _run("experiments", "create", "--name", "other", "--route", "tiny", "--control", "tiny:1",
                     "--treatment", "tiny:2", "--primary", "latency")  # fmt: skip
    assert code == 4 and "running experiment 'shorter'" in out
    code, out = _run("rollout", "start", "tiny", "--candidate", "tiny:2")
    assert code == 4 and "running experiment" in out

    rng = random.Random(3)
    now, clock = time.time(), time.perf_counter()
    records = []
    for i in range(400):
        version = rng.choices(["1", "2", "3"], [50, 25, 25])[0]
        failed = version == "3" and rng.random() < 0.3
        records.append(RequestRecord(
            request_id=f"x{i}", trace_id="0" * 32, endpoint="chat", received=clock, received_at=now,
            route="tiny", model="tiny", version=version, status=503 if failed else 200,
            finished=clock + rng.lognormvariate(-1, 0.3),
        ))  # fmt: skip
    RequestLogStore(database).insert(records)
    code, out = _run("experiments", "show", "shorter", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert sum(result["requests"].values()) == 400 and not result["sample_ratio"]["mismatch"]
    by_arm = {r["treatment"]: r for r in result["results"]}
    assert by_arm["tiny:3"]["primary"]["verdict"] == "worse" and by_arm["tiny:3"]["primary"]["effect"] > 0.2
    assert by_arm["tiny:2"]["primary"]["verdict"] == "no detectable difference yet"
    assert by_arm["tiny:2"]["guardrails"][0]["metric"] == "latency"
    code, out = _run("experiments", "show", "shorter")
    assert code == 0 and "tiny:3 vs tiny:1" in out and "worse" in out
    assert _run("experiments", "stop", "shorter")[0] == 0
    assert _run("experiments", "stop", "shorter")[0] == 4
    assert store.splits() == ()
    code, out = _run("experiments", "list")
    assert code == 0 and "stopped" in out
    assert [r.action for r in AuditLog(database).list(target="experiment/shorter")] == [
        "experiment.stop",
        "experiment.create",
    ]
    database.dispose()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("treatments: [tiny:9, tiny:3]", "9"),
        ("treatments: [tiny:1, tiny:3]", "treatments[0]: tiny:1 is already an arm"),
        ("treatments: [other:2, tiny:3]", "treatments[0]: must be a version of the control's model"),
        ("allocation: [50, 40, 20]", "allocation: must sum to 100"),
        ("allocation: [50, 50]", "allocation: must list 3 percentages"),
        ("primary: speed", "primary: required: one of"),
        ("guardrails: {speed: 1}", "guardrails.speed: unknown metric"),
        ("colour: blue", "colour: unknown key"),
        ("control: tiny", "control: must name a version"),
    ],
)
def test_bad_experiments_name_the_key_and_change_nothing(
    database_url: str, tmp_path: Path, change: str, words: str
) -> None:
    key = change.split(":")[0]
    lines = [line for line in EXPERIMENT.strip().splitlines() if not line.startswith(f"{key}:")]
    spec = tmp_path / "bad.yaml"
    spec.write_text("\n".join([*lines, change]) + "\n")
    code, out = _run("experiments", "create", str(spec))
    assert code == 2 and words in out, out
    database = open_database(database_url)
    assert ExperimentStore(database).find() == []
    database.dispose()
