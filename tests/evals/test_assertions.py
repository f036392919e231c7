"""Deterministic assertions and the LLM-judge parser: scores, thresholds, weights, errors kept, never a crash."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from modelyard.evals.assertions import Observation, PythonFunctions, case_outcome, score
from modelyard.evals.dataset import Case
from modelyard.evals.judge import judge_request, parse_verdict
from modelyard.evals.suite import Assertion, LlmJudge


def check(spec: dict, output: str | None, expected: object = None, tmp_path: Path | None = None, **observed):
    assertion = msgspec.convert(spec, Assertion)
    case = Case(id="c", prompt="p", expected=expected)
    functions = PythonFunctions(tmp_path or Path("."))
    return score(assertion, case, Observation(output, **observed), functions)


@pytest.mark.parametrize(
    ("spec", "output", "expected", "passed"),
    [
        ({"type": "equals"}, " Paris \n", "Paris", True),
        ({"type": "equals", "value": "paris"}, "Paris", None, False),
        ({"type": "equals", "value": "paris", "ignore_case": True}, "Paris", None, True),
        ({"type": "contains"}, "It is Paris.", "Paris", True),
        ({"type": "contains", "value": "paris"}, "It is Paris.", None, False),
        ({"type": "contains-any", "values": ["rome", "paris"]}, "It is Paris.", None, True),
        ({"type": "contains-any"}, "It is Lyon.", ["Paris", "Rome"], False),
        ({"type": "regex", "pattern": r"\b\d{4}\b"}, "in 1789 it", None, True),
        ({"type": "regex", "pattern": r"^yes$", "ignore_case": True}, "YES", None, True),
        ({"type": "is-json"}, '```json\n{"a": 1}\n```', None, True),
        ({"type": "is-json"}, "{a: 1}", None, False),
        ({"type": "json-schema", "schema": {"type": "object", "required": ["a"]}}, '{"a": 1}', None, True),
        ({"type": "json-schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}, '{"a": 1}',
         None, False),
    ],
)  # fmt: skip
def test_text_assertions(spec: dict, output: str, expected: object, passed: bool) -> None:
    result = check(spec, output, expected)
    assert result.passed is passed
    assert result.score == (1.0 if passed else 0.0)
    assert result.error is None


def test_latency_and_token_limits() -> None:
    assert check({"type": "max-latency-ms", "value": 100}, "x", latency_ms=80).passed
    slow = check({"type": "max-latency-ms", "value": 100}, "x", latency_ms=120)
    assert not slow.passed and "120 ms vs max 100 ms" in slow.reason
    assert not check({"type": "max-tokens", "value": 5}, "x", completion_tokens=6).passed
    missing = check({"type": "max-tokens", "value": 5}, None)
    assert missing.error and not missing.passed


def test_a_failed_call_fails_every_check_as_an_error() -> None:
    result = check({"type": "contains", "value": "x"}, None)
    assert (result.passed, result.error) == (False, "no output (the call failed)")


def test_python_functions_from_files_and_modules(tmp_path: Path) -> None:
    (tmp_path / "checks.py").write_text(
        "def short(output, case):\n    return len(output) < 10\n"
        "def half(output, case):\n    return 0.5\n"
        "def verdict(output, case):\n    return {'pass': False, 'score': 0.9, 'reason': 'nope ' + case['id']}\n"
        "def boom(output, case):\n    raise RuntimeError('kaput')\n"
    )
    assert check({"type": "python", "function": "checks.py:short"}, "tiny", tmp_path=tmp_path).passed
    half = check({"type": "python", "function": "checks.py:half", "threshold": 0.6}, "x", tmp_path=tmp_path)
    assert (half.score, half.passed) == (0.5, False)
    verdict = check({"type": "python", "function": "checks.py:verdict"}, "x", tmp_path=tmp_path)
    assert (verdict.score, verdict.passed, verdict.reason) == (0.9, False, "nope c")
    boom = check({"type": "python", "function": "checks.py:boom"}, "x", tmp_path=tmp_path)
    assert boom.error == "RuntimeError: kaput" and not boom.passed
    assert check({"type": "python", "function": "json:loads"}, "1").error  # returns int 1 -> score 1? no: case arg
    missing = check({"type": "python", "function": "checks.py:absent"}, "x", tmp_path=tmp_path)
    assert "has no function 'absent'" in (missing.error or "")


def test_weights_and_case_threshold() -> None:
    results = [
        check({"type": "contains", "value": "a", "weight": 3}, "a"),
        check({"type": "contains", "value": "b", "weight": 1}, "a"),
    ]
    assert case_outcome(results, None) == (False, 0.75)
    assert case_outcome(results, 0.7) == (True, 0.75)
    assert case_outcome(results, 0.8) == (False, 0.75)


@pytest.mark.parametrize(
    ("raw", "prefilled", "score", "reasoning"),
    [
        ('{"score": 0.8, "reasoning": "mostly right"}', False, 0.8, "mostly right"),
        ('Sure! ```json\n{"score": 1, "reasoning": "ok"}\n```', False, 1.0, "ok"),
        ('0.3, "reasoning": "weak"}', True, 0.3, "weak"),
        ("Score: 7/10 because it is fine", False, 0.7, None),
        ("I would give it 80%", False, 0.8, None),
        ("score = 4", False, 0.4, None),
        ("0.25", False, 0.25, None),
    ],
)  # fmt: skip
def test_judge_parser_finds_scores(raw: str, prefilled: bool, score: float, reasoning: str | None) -> None:
    verdict = parse_verdict(raw, prefilled)
    assert verdict.error is None and verdict.score == pytest.approx(score)
    assert verdict.raw == raw
    if reasoning is not None:
        assert verdict.reasoning == reasoning


@pytest.mark.parametrize("raw", ["", "The answer is good.", '{"score": "high"}', "score: 42.5", "<eos>"])
def test_unparsable_judge_output_is_an_error_that_keeps_the_raw_text(raw: str) -> None:
    verdict = parse_verdict(raw)
    assert verdict.score is None and verdict.error and verdict.raw == raw


def test_judge_request_modes() -> None:
    judge = LlmJudge(rubric="Names the capital")
    kind, body = judge_request(judge, {"prompt": "Capital of France?"}, "Paris", 0.0, 7)
    assert kind == "chat" and body["seed"] == 7 and "Names the capital" in body["messages"][1]["content"]
    kind, body = judge_request(LlmJudge(rubric="r", mode="completion"), {"prompt": "q"}, "a", 0.0, None)
    assert kind == "completion" and body["prompt"].endswith('{"score": ') and "seed" not in body
