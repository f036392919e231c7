"""Evals end to end: the real default model (Q4_K_M) and its Q2_K re-quantization, a real gateway and engine.

Quant report, gated promotion refused and forced, a suite run from the CLI with its exit code, two runs
compared, the HTML report, and bad input — all through ``python -m modelyard`` as CI would call it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]

EXAMPLE = Path(__file__).parents[2] / "examples" / "evals" / "smoke.yaml"
V1, V2 = f"{MODEL}:1", f"{MODEL}:2"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelyard", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})  # fmt: skip


def english_text(path: Path) -> Path:
    """Natural English already on the machine: the licence texts every Debian system ships, else Python's own
    documentation strings (stdlib modules) — nothing is downloaded."""
    licences = Path("/usr/share/common-licenses")
    if (licences / "GPL-3").is_file():
        path.write_text((licences / "GPL-3").read_text())
    else:
        import pydoc

        path.write_text("\n\n".join(pydoc.getdoc(__import__(m)) for m in ("pydoc", "argparse", "asyncio", "json")))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, engine_build: object, default_model_path: Path
        ) -> Iterator[tuple[dict[str, str], GatewayProcess, Path]]:  # fmt: skip
    """A registry with the default model (:1, production, served) and its Q2_K variant (:2, not served)."""
    root = tmp_path_factory.mktemp("evals")
    env = {"MODELYARD_DATA_DIR": str(root / "data"), "MODELYARD_ACTOR": "ci@test"}
    gateway = GatewayProcess(root / "data", "--parallel", "4", "--ctx-size", "4096", "--registry-poll", "0.2",
                             env=env)  # fmt: skip
    try:
        gateway.wait_ready()
        quantized = cli(env, "models", "quantize", V1, "--type", "Q2_K")
        assert quantized.returncode == 0, quantized.stderr
        yield env, gateway, english_text(root / "english.txt")
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def quant_reports(lab) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """``eval quant`` of :1 against :2 (Q2_K) and against itself, as a user runs it: stored against the candidate."""
    env, _gateway, text = lab
    reports = {}
    for candidate in (V2, V1):
        started = time.monotonic()
        result = cli(env, "eval", "quant", "--base", V1, "--candidate", candidate, "--text", str(text),
                     "--ctx-size", "128", "--chunks", "4", "--json")  # fmt: skip
        assert result.returncode == 0, result.stderr
        reports[candidate] = json.loads(result.stdout)
        keys = ("ppl_base", "ppl_candidate", "ppl_ratio", "kld_mean", "kld_p99", "top_token_agreement")
        shown = json.dumps({k: reports[candidate][k] for k in keys})
        print(f"\n{V1} vs {candidate} in {time.monotonic() - started:.0f} s: {shown}")
    return reports


def test_quant_report_shows_q2k_clearly_worse_and_q4km_equal_to_itself(lab, quant_reports) -> None:  # type: ignore[no-untyped-def]
    env, _gateway, _text = lab
    q2k = quant_reports[V2]
    assert q2k["candidate"] == V2 and q2k["base"] == V1
    assert q2k["ppl_ratio"] > 1.3 and q2k["ppl_candidate"] > q2k["ppl_base"]
    assert q2k["kld_mean"] > 0.2 and q2k["kld_p99"] > q2k["kld_mean"]
    assert q2k["top_token_agreement"] < 0.85

    same = quant_reports[V1]
    assert same["ppl_ratio"] == pytest.approx(1.0, abs=0.01) and same["kld_mean"] < 0.01
    assert same["top_token_agreement"] > 0.97

    shown = cli(env, "models", "show", V2)
    assert q2k["report_id"] in shown.stdout and "PPL ratio" in shown.stdout
    card = cli(env, "models", "card", V2).stdout
    assert f"| {q2k['report_id']} | {V1} |" in card


def test_suite_runs_end_to_end_with_exit_codes_reports_and_compare(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, gateway, _text = lab
    first = cli(env, "eval", "run", str(EXAMPLE), "--target", MODEL, "--url", gateway.url, "--json")
    assert first.returncode in (0, 1), first.stderr
    run_a = json.loads(first.stdout)
    assert first.returncode == (0 if run_a["threshold_met"] else 1)  # CI: the exit code is the verdict
    assert run_a["status"] == "complete" and run_a["version"] == V1 and run_a["summary"]["total"] == 7
    assert (run_a["temperature"], run_a["seed"]) == (0.0, 42)
    cases = {c["case_id"]: c for c in run_a["cases"]}
    assert all(c["answered_by"] == V1 and c["completion_tokens"] for c in cases.values())
    judged = next(a for a in cases["judged-capital"]["assertions"] if a["type"] == "llm-judge")
    assert isinstance(judged["detail"]["raw"], str)  # the judge's own words are kept, parsable or not
    assert judged["error"] is None or judged["error"].startswith("judge output unparsable")
    report = Path(run_a["report_path"])
    page = report.read_text()
    assert report.suffix == ".html" and "<svg" in page and "capital-fr" in page and "<link" not in page
    print(f"\nrun A {run_a['run_id']}: pass rate {run_a['summary']['pass_rate']:.3f}, exit {first.returncode}, "
          f"judge said {judged['detail']['raw']!r}")  # fmt: skip

    second = cli(env, "eval", "run", str(EXAMPLE), "--target", f"{MODEL}@1", "--url", gateway.url,
                 "--temperature", "1.5", "--seed", "7", "--json")  # fmt: skip
    run_b = json.loads(second.stdout)
    assert run_b["target"] == V1 and run_b["temperature"] == 1.5
    compared = cli(env, "eval", "compare", run_a["run_id"], run_b["run_id"], "--json")
    assert compared.returncode == 0, compared.stderr
    comparison = json.loads(compared.stdout)
    flips = comparison["flipped"]
    assert comparison["mcnemar"]["discordant"] == len(flips) and 0 < comparison["mcnemar"]["p_value"] <= 1
    assert comparison["paired_cases"] == 7 and "latency_mean_ms" in comparison["deltas"]
    print(f"compare: {comparison['verdict']}")
    text = cli(env, "eval", "compare", run_a["run_id"], run_b["run_id"]).stdout
    assert "McNemar exact p =" in text and "A pass rate" in text

    cached = cli(env, "eval", "run", str(EXAMPLE), "--cached", run_a["run_id"], "--url", gateway.url, "--json")
    rescored = json.loads(cached.stdout)
    assert rescored["cached_from"] == run_a["run_id"] and rescored["version"] == V1
    assert [c["output"] for c in rescored["cases"]] == [c["output"] for c in run_a["cases"]]

    listed = json.loads(cli(env, "eval", "list", "--model", V1, "--json").stdout)
    assert {run_a["run_id"], run_b["run_id"], rescored["run_id"]} <= {r["run_id"] for r in listed}
    assert run_a["run_id"] in cli(env, "models", "card", V1).stdout


def test_bad_input_is_a_clear_message_and_records_nothing(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, gateway, _text = lab
    before = len(json.loads(cli(env, "eval", "list", "--json", "--limit", "1000").stdout))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: bad\ndataset: cases.jsonl\nassertions:\n  - {type: contains, value: x}\n")

    missing = cli(env, "eval", "run", str(suite), "--target", MODEL, "--url", gateway.url)
    assert missing.returncode == 2 and "field 'dataset': dataset file not found" in missing.stderr
    (tmp_path / "cases.jsonl").write_text("")
    empty = cli(env, "eval", "run", str(suite), "--target", MODEL, "--url", gateway.url)
    assert empty.returncode == 2 and "the dataset has no cases" in empty.stderr
    (tmp_path / "cases.jsonl").write_text(
        '{"id": "ok", "prompt": "hi"}\n{"id": "broken", "messages": [{"role": "robot", "content": "x"}]}\n'
    )
    broken = cli(env, "eval", "run", str(suite), "--target", MODEL, "--url", gateway.url)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "cases.jsonl: line 2 (case 'broken'): field 'messages[0].role'" in " ".join(broken.stderr.split())
    (tmp_path / "cases.jsonl").write_text('{"id": "ok", "prompt": "hi"}\n')
    unknown = cli(env, "eval", "run", str(suite), "--target", "no-such-model", "--url", gateway.url)
    assert unknown.returncode == 2 and "unknown target 'no-such-model'" in unknown.stderr
    assert MODEL in unknown.stderr  # names what is served
    down = cli(env, "eval", "run", str(suite), "--target", MODEL, "--url", "http://127.0.0.1:9")
    assert down.returncode == 3 and "cannot reach the modelyard gateway" in down.stderr
    assert len(json.loads(cli(env, "eval", "list", "--json", "--limit", "1000").stdout)) == before

    (tmp_path / "cases.jsonl").write_text('{"id": "quick", "prompt": "1, 2, 3,", "max_tokens": 4}\n'
                                          '{"id": "slow", "prompt": "Once upon a time", "max_tokens": 64, '
                                          '"timeout_s": 0.05}\n')  # fmt: skip
    timed = cli(env, "eval", "run", str(suite), "--target", MODEL, "--url", gateway.url, "--json")
    assert timed.returncode == 1, timed.stderr  # threshold 1.0 missed: CI fails
    run = json.loads(timed.stdout)
    slow = next(c for c in run["cases"] if c["case_id"] == "slow")
    assert slow["error"] == "timed out after 0.05 s" and slow["output"] is None and not slow["passed"]
    assert run["status"] == "complete" and run["summary"]["errors"] >= 1


def test_gates_block_q2k_and_let_q4km_pass_and_force_is_recorded(lab, quant_reports, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, gateway, _text = lab
    reports = quant_reports
    gates = tmp_path / "gates.yaml"
    gates.write_text("gates:\n  - {type: ppl_ratio, max: 1.05, name: ppl-vs-base}\n  - {type: kld_mean, max: 0.05}\n"
                     "  - {type: no_regression, suite: smoke}\n")  # fmt: skip
    assert cli(env, "models", "gates", "set", MODEL, "--file", str(gates)).returncode == 0

    refused = cli(env, "models", "promote", MODEL, "2")
    assert refused.returncode == 4, refused.stderr
    message = " ".join(refused.stderr.split())
    assert f"Promotion of {V2} to 'production' refused" in message
    assert f"ppl-vs-base (ppl_ratio): PPL ratio {reports[V2]['ppl_ratio']:.4f} > 1.05" in message
    assert "kld_mean" in message
    print(f"\nrefused: {refused.stderr.strip()}")

    same = cli(env, "models", "promote", MODEL, "1")
    assert same.returncode == 0, same.stderr
    assert "✓ ppl-vs-base: PPL ratio" in same.stdout

    api = httpx.put(f"{gateway.url}/admin/models/{MODEL}/aliases/production", json={"version": 2}, timeout=30)
    assert api.status_code == 409, api.text
    error = api.json()["error"]
    assert error["code"] == "promotion_gate_failed" and "PPL ratio" in error["message"]
    api = httpx.post(f"{gateway.url}/admin/models/{MODEL}/promote", json={"version": 2, "force": True},
                     headers={"x-modelyard-actor": "api-release"}, timeout=30)  # fmt: skip
    assert api.status_code == 200, api.text
    event = json.loads(cli(env, "models", "show", MODEL, "--json").stdout)["events"][-1]
    assert (event["actor"], event["to_version"], event["detail"]["forced"]) == ("api-release", 2, True)
    assert cli(env, "models", "rollback", MODEL).returncode == 0

    forced = cli(env, "models", "promote", MODEL, "2", "--force", "--actor", "release-manager")
    assert forced.returncode == 0 and "forced" in forced.stderr
    events = json.loads(cli(env, "models", "show", MODEL, "--json").stdout)["events"]
    move = events[-1]
    assert move["kind"] == "alias_moved" and move["actor"] == "release-manager" and move["detail"]["forced"]
    failed = {g["gate"]: g["message"] for g in move["detail"]["failed_gates"]}
    assert set(failed) == {"ppl-vs-base", "kld_mean", "no_regression"}
    assert failed["no_regression"] == f"no complete run of suite 'smoke' for {V2}"  # missing evidence fails
    assert cli(env, "models", "rollback", MODEL).returncode == 0  # rollbacks are never gated
