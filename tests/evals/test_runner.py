"""The runner against a fake gateway: retries, timeouts, unparsable judges, aborts, cached re-scoring."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from evals.fake_gateway import fake_gateway
from modelyard.evals.client import GatewayClient, UnknownTarget
from modelyard.evals.compare import compare_runs
from modelyard.evals.dataset import load_dataset
from modelyard.evals.records import RunRecord
from modelyard.evals.reports import render_html, render_markdown
from modelyard.evals.runner import RunOptions, run_suite
from modelyard.evals.suite import load_suite

SUITE = """
name: capitals
dataset: cases.jsonl
pass_threshold: 0.5
defaults: {timeout_s: 1, retries: 1, concurrency: 3}
assertions:
  - {type: contains, name: mentions-city}
"""

CASES = [
    {"id": "fr", "prompt": "Capital of France?", "expected": "Paris"},
    {"id": "de", "prompt": "Capital of Germany?", "expected": "Berlin"},
    {"id": "slow", "prompt": "France, but sleep first", "expected": "Paris", "timeout_s": 0.3},
    {"id": "long", "prompt": "France, too long", "expected": "Paris"},
    {"id": "judged", "messages": [{"role": "user", "content": "Capital of France?"}], "expected": "Paris",
     "assert": [{"type": "llm-judge", "rubric": "names Paris", "judge": "judge-good"},
                {"type": "llm-judge", "rubric": "names Paris", "judge": "judge-bad", "name": "bad-judge",
                 "weight": 0}]},
]  # fmt: skip


def execute(suite_path: Path, target: str, cached: RunRecord | None = None) -> tuple[RunRecord, dict[str, int]]:
    suite = load_suite(suite_path)
    dataset = load_dataset(suite)

    async def go() -> tuple[RunRecord, dict[str, int]]:
        async with fake_gateway() as (url, calls), aiohttp.ClientSession() as session:
            client = GatewayClient(url, session, retries=suite.spec.defaults.retries, backoff_s=0.01)
            if cached is None:
                await client.check_target(target)
            record = await run_suite(suite, dataset, client, RunOptions(target, url, "tester", cached=cached))
            return record, dict(calls)

    return asyncio.run(go())


def test_a_run_records_every_case_with_errors_kept(write_suite: Callable[..., Path]) -> None:
    record, calls = execute(write_suite(SUITE, CASES), "flaky")
    assert record.status == "complete" and record.version == "flaky:1"
    cases = {c.case_id: c for c in record.cases}
    assert [c.case_id for c in record.cases] == ["fr", "de", "slow", "long", "judged"]
    assert cases["fr"].passed and cases["fr"].latency_ms is not None and cases["fr"].completion_tokens == 4
    assert not cases["de"].passed and cases["de"].error is None
    assert cases["slow"].error == "timed out after 0.3 s" and cases["slow"].output is None
    assert cases["long"].error == "HTTP 400: prompt exceeds the context"
    judged = {a["name"]: a for a in cases["judged"].assertions}
    assert judged["llm-judge"]["score"] == 0.9 and judged["llm-judge"]["detail"]["reasoning"] == "names the city"
    bad = judged["bad-judge"]
    assert bad["error"].startswith("judge output unparsable") and bad["detail"]["raw"] == "What a lovely answer <eos>"
    assert not cases["judged"].passed and "assertion error" in (cases["judged"].error or "")
    assert sum(1 for c in record.cases if c.attempts == 2) == 1  # the first call got a 503 and was retried
    s = record.summary
    assert (s["total"], s["passed"], s["failed"], s["errors"]) == (5, 1, 1, 3)
    assert not record.threshold_met
    assert (record.seed, record.temperature) == (42, 0.0)
    assert cases["fr"].request["seed"] == 42 and cases["fr"].request["temperature"] == 0.0
    assert calls["judge-good"] == 1 and calls["judge-bad"] == 1
    html = render_html(record)
    assert "<svg" in html and "What a lovely answer" in html and "timed out after 0.3 s" in html
    assert not any(ref in html for ref in ("<link", "src=", "@import", "url("))  # self-contained: no external assets
    assert "| mentions-city | contains | 40.0% (2/5)" in render_markdown(record)


def test_cached_mode_rescores_without_calling_the_model(write_suite: Callable[..., Path]) -> None:
    first, _ = execute(write_suite(SUITE, CASES), "good")
    cases = [{**c, "expected": "know"} if c["id"] == "de" else c for c in CASES]
    rescored, calls = execute(write_suite(SUITE, cases), "good", cached=first)
    assert calls.get("good", 0) == 0 and rescored.cached_from == first.run_id and rescored.version == "good:1"
    assert [c.output for c in rescored.cases] == [c.output for c in first.cases]
    comparison = compare_runs(first, rescored)
    assert [(f[0], f[1], f[2]) for f in comparison.flipped] == [("de", False, True)]
    assert comparison.test.p_value == 1.0 and not comparison.significant
    assert comparison.to_json()["mcnemar"]["discordant"] == 1


def test_an_unavailable_gateway_aborts_the_run_instead_of_scoring_it(write_suite: Callable[..., Path]) -> None:
    record, _calls = execute(write_suite(SUITE, CASES), "down")
    assert record.status == "aborted" and "could not serve 'down' after 2 attempts" in (record.abort_reason or "")
    assert not record.threshold_met and len(record.cases) < len(CASES)


def test_an_unknown_target_is_named(write_suite: Callable[..., Path]) -> None:
    with pytest.raises(UnknownTarget, match=r"unknown target 'nope': the gateway at .* serves good, flaky"):
        execute(write_suite(SUITE, CASES), "nope")
