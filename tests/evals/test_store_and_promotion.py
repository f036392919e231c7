"""Eval evidence in the registry store and gated promotion, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from modelyard.api.problems import to_api_error
from modelyard.evals.gates import parse_gates
from modelyard.evals.records import ABORTED, COMPLETE, CaseResult, QuantRecord, RunRecord
from modelyard.evals.storage import EvalStore, version_evaluations
from modelyard.registry.card import model_card, render_markdown
from modelyard.registry.errors import NotFound, PromotionGateFailed
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.registration import Declared, register_file
from modelyard.registry.store import RegistryStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def make_run(run_id: str, version: str, outcomes: list[bool], status: str = COMPLETE) -> RunRecord:
    cases = tuple(
        CaseResult(i, f"c{i}", {"prompt": f"q{i}"}, "a", {}, "a" if ok else "b", ok, 1.0 if ok else 0.0, None,
                   ({"name": "contains", "type": "contains", "score": 1.0 if ok else 0.0, "passed": ok, "weight": 1.0,
                     "reason": "", "error": None, "detail": {}},), 10.0 + i, 3, 2, version)
        for i, ok in enumerate(outcomes)
    )  # fmt: skip
    return RunRecord(run_id, "smoke", "s" * 64, "d" * 64, "tiny", "http://gw", status, 0.8, 0.0, 42, "alice", NOW, NOW,
                     version, cases, report_path=f"/reports/{run_id}.html")  # fmt: skip


def make_quant(report_id: str, candidate: str, ratio: float, kld: float) -> QuantRecord:
    return QuantRecord(report_id, "tiny:1", candidate, "/text.txt", "t" * 64, 128, 8, 10.0, 10.0 * ratio, ratio, kld,
                       kld * 5, 0.9, "alice", NOW)  # fmt: skip


@pytest.fixture
def tiny(store: RegistryStore, checker: IntegrityChecker, gguf_file: Callable[..., Path]) -> EvalStore:
    for seed in (1, 2):
        register_file(store, checker, gguf_file(seed), "tiny", Declared(), actor="alice")
    return EvalStore(store.database)


def test_runs_are_stored_whole_and_read_back(tiny: EvalStore) -> None:
    tiny.save_run(make_run("run-aaa111", "tiny:1", [True, True, False]))
    tiny.save_run(make_run("run-bbb222", "tiny:2", [True], status=ABORTED))
    run = tiny.get_run("run-aaa")
    assert (run.run_id, run.version, run.status, run.total) == ("run-aaa111", "tiny:1", COMPLETE, 3)
    assert run.pass_rate == pytest.approx(2 / 3) and not run.threshold_met
    assert [c.case_id for c in run.cases] == ["c0", "c1", "c2"] and run.cases[2].output == "b"
    assert run.cases[0].assertions[0]["name"] == "contains" and run.cases[1].latency_ms == 11.0
    assert [r.run_id for r in tiny.list_runs("tiny")] == ["run-bbb222", "run-aaa111"]
    assert [r.run_id for r in tiny.list_runs("tiny:2")] == ["run-bbb222"]
    with pytest.raises(NotFound, match="No eval run 'run-zzz'"):
        tiny.get_run("run-zzz")
    with pytest.raises(NotFound, match="No registered version 'tiny:9'"):
        tiny.save_run(make_run("run-ccc", "tiny:9", [True]))
    assert [r.run_id for r in tiny.list_runs()] == ["run-bbb222", "run-aaa111"]  # the failed save left nothing


def test_evidence_is_insert_only(tiny: EvalStore) -> None:
    tiny.save_run(make_run("run-aaa111", "tiny:1", [True]))
    tiny.save_quant(make_quant("quant-1", "tiny:2", 1.5, 0.3))
    for statement in ("UPDATE eval_runs SET pass_rate = 1", "DELETE FROM eval_case_results",
                      "UPDATE quant_reports SET ppl_ratio = 1"):  # fmt: skip
        with pytest.raises(DBAPIError), tiny.database.transaction() as session:
            session.execute(text(statement))


def test_gated_promotion_refuses_with_numbers_and_force_is_recorded(tiny: EvalStore, store: RegistryStore) -> None:
    spec = parse_gates({"gates": [{"type": "ppl_ratio", "max": 1.05}, {"type": "pass_rate", "suite": "smoke",
                                                                       "min": 0.9}]}, "gates.yaml")  # fmt: skip
    tiny.set_gates("tiny", spec, "alice")
    assert tiny.get_gates("tiny") == spec
    with pytest.raises(PromotionGateFailed, match="no quant report for tiny:2") as refused:
        store.move_alias("tiny", "production", 2, "bob")
    answered = to_api_error(refused.value)  # what every admin API answers with
    assert answered is not None and answered.code == "promotion_gate_failed" and answered.status == 409
    tiny.save_quant(make_quant("quant-bad", "tiny:2", 1.9, 0.6))
    tiny.save_run(make_run("run-v2", "tiny:2", [True] * 9 + [False]))
    with pytest.raises(PromotionGateFailed) as refused:
        store.move_alias("tiny", "production", 2, "bob")
    assert "gate 'ppl_ratio' failed: PPL ratio 1.9000 > 1.05 (tiny:2 vs tiny:1, report quant-bad)" in str(refused.value)
    assert [g["gate"] for g in refused.value.gates] == ["ppl_ratio"]  # the suite gate passed (0.9 >= 0.9)
    assert store.get_model("tiny").production == 1
    store.move_alias("tiny", "staging", 2, "bob")  # other aliases are not gated

    move = store.move_alias("tiny", "production", 2, "carol", force=True)
    assert (move.from_version, move.to_version) == (1, 2)
    event = store.events("tiny")[-1]
    assert event.kind == "alias_moved" and event.actor == "carol" and event.detail["forced"] is True
    assert event.detail["failed_gates"][0]["numbers"]["value"] == 1.9
    assert "FORCED past failed gates: ppl_ratio" in event.describe()

    tiny.save_quant(make_quant("quant-self", "tiny:1", 1.0, 0.0))
    tiny.save_run(make_run("run-v1", "tiny:1", [True] * 10))
    back = store.move_alias("tiny", "production", 1, "dave")
    assert back.to_version == 1 and all(g["passed"] for g in store.events("tiny")[-1].detail["gates"])
    assert "gates_set" in [e.kind for e in store.events("tiny")]

    tiny.set_gates("tiny", None, "alice")
    assert tiny.get_gates("tiny") is None
    store.move_alias("tiny", "production", 2, "erin")  # no gates, no checks


def test_no_regression_gate_uses_the_current_production_run(tiny: EvalStore, store: RegistryStore) -> None:
    tiny.set_gates("tiny", parse_gates({"gates": [{"type": "no_regression", "suite": "smoke"}]}, "g"), "alice")
    tiny.save_run(make_run("run-v1", "tiny:1", [True] * 12))
    tiny.save_run(make_run("run-v2", "tiny:2", [False] * 8 + [True] * 4))
    with pytest.raises(PromotionGateFailed, match=r"8 regressed / 0 improved, McNemar p=0.007812"):
        store.move_alias("tiny", "production", 2, "bob")
    tiny.save_run(make_run("run-v2b", "tiny:2", [False] + [True] * 11))  # the newest complete run counts
    assert store.move_alias("tiny", "production", 2, "bob").to_version == 2


def test_model_card_links_evaluations(tiny: EvalStore, store: RegistryStore) -> None:
    tiny.save_run(make_run("run-aaa111", "tiny:2", [True, False]))
    tiny.save_quant(make_quant("quant-1", "tiny:2", 1.9, 0.61))
    evaluations = version_evaluations(tiny, "tiny:2")
    card = model_card(store.get_model("tiny"), store.get_version("tiny", 2), store.events("tiny"), evaluations)
    markdown = render_markdown(card)
    assert "| quant-1 | tiny:1 | 10.00 → 19.00 | 1.900 | 0.6100 |" in markdown
    assert "| run-aaa111 | smoke | complete | 50.0% of 2 | [HTML](file:///reports/run-aaa111.html) |" in markdown
