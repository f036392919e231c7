"""``modelyard rollout …`` against a real SQLite database: start (with errors naming the key), status, history,
resume, promote through the gates, rollback, abort."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.registration import Declared, register_file
from modelyard.roles.stores import open_database, registry_store
from modelyard.rollouts.store import RolloutStore

from registry.gguf_files import write_gguf


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("MODELYARD_DATABASE_URL", url)
    database = open_database(url)
    store = registry_store(database)
    checker = IntegrityChecker(tmp_path / "integrity")
    for seed in (1, 2):
        register_file(store, checker, write_gguf(tmp_path / f"m{seed}.gguf", seed=seed), "tiny", Declared(), "alice")
    store.move_alias("tiny", "production", 1, "alice")
    database.dispose()
    return url


def _run(*args: str) -> tuple[int, str]:
    """Exit code and what the command printed: its stdout when it succeeded (what `--json` callers parse; log lines
    go to stderr), everything when it failed (the error is on stderr)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_start_status_history_and_manual_actions(database_url: str) -> None:
    code, out = _run("rollout", "start", "tiny", "--candidate", "tiny:2", "--steps", "10,50,100",
                     "--guardrail", "latency=0.2", "--guardrail", "error_rate=0.01", "--json")  # fmt: skip
    assert code == 0, out
    started = json.loads(out)
    assert (started["share"], started["state"], started["control_version"]) == (10, "running", 1)
    assert started["plan"]["guardrails"] == {"latency": 0.2, "error_rate": 0.01}
    code, out = _run("rollout", "start", "tiny", "--candidate", "tiny:2")
    assert code == 4 and "already has an active rollout" in out
    code, out = _run("rollout", "status")
    assert code == 0 and "tiny" in out and "10 %" in out
    rollout_id = str(started["id"])
    assert _run("rollout", "resume", rollout_id)[0] == 4  # running, not paused
    code, out = _run("rollout", "promote", rollout_id, "--json")
    assert code == 0 and json.loads(out)["state"] == "promoted", out
    code, out = _run("rollout", "history", rollout_id)
    assert code == 0 and "start" in out and "promote" in out and "promoted by a person" in out
    assert _run("rollout", "abort", rollout_id)[0] == 4  # finished


def test_rollback_abort_and_bad_input_change_nothing(database_url: str) -> None:
    for args, words in (
        (("--candidate", "tiny"), "must name a version"),
        (("--candidate", "tiny:9"), "9"),
        (("--candidate", "nope:1"), "nope"),
        (("--candidate", "tiny:2", "--steps", "50,20"), "steps[1]"),
        (("--candidate", "tiny:2", "--guardrail", "speed=1"), "guardrails.speed: unknown metric"),
        (("--candidate", "tiny:2", "--guardrail", "latency"), "METRIC=ALLOWED"),
        (("--candidate", "tiny:1"), "already what"),
    ):
        code, out = _run("rollout", "start", "tiny", *args)
        assert code in (2, 4) and words in out, (args, out)
    database = open_database(database_url)
    assert RolloutStore(database).find() == []
    database.dispose()
    code, out = _run("rollout", "start", "tiny", "--candidate", "tiny:2", "--json")
    rollout_id = str(json.loads(out)["id"])
    assert json.loads(_run("rollout", "rollback", rollout_id, "--json")[1])["state"] == "rolled_back"
    code, out = _run("rollout", "start", "tiny", "--candidate", "tiny:2", "--json")
    second = str(json.loads(out)["id"])
    assert json.loads(_run("rollout", "abort", second, "--json")[1])["state"] == "aborted"
    assert _run("rollout", "status", "99")[0] == 2
