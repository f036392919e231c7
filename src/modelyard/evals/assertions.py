"""Scoring one output against one assertion: pure functions from (assertion, case, observation) to a result.

Every assertion yields a score in [0, 1] and passes when the score reaches its threshold, so deterministic checks
(score 0 or 1), judges and Python functions (any score) combine into one weighted case score. A check that
cannot be evaluated (a Python function that raises, a judge that answers nonsense) is an *error* result with the
reason kept, never an exception that stops the run. The LLM judge needs the network; it lives in
:mod:`modelyard.evals.judge`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.evals.dataset import Case
from modelyard.evals.suite import (
    Assertion,
    Contains,
    ContainsAny,
    Equals,
    IsJson,
    JsonSchema,
    LlmJudge,
    MaxLatencyMs,
    MaxTokens,
    Python,
    Regex,
)


@dataclass(frozen=True)
class Observation:
    """What the model did for one case."""

    output: str | None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class AssertionResult:
    name: str
    type: str
    score: float
    passed: bool
    weight: float
    reason: str = ""
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "score": self.score,
            "passed": self.passed,
            "weight": self.weight,
            "reason": self.reason,
            "error": self.error,
            "detail": self.detail,
        }


def result(assertion: Assertion, score: float, reason: str = "", **detail: Any) -> AssertionResult:
    score = min(1.0, max(0.0, float(score)))
    return AssertionResult(
        assertion.label,
        assertion.kind,
        score,
        score >= assertion.pass_threshold(),
        assertion.weight,
        reason,
        detail=detail,
    )


def error_result(assertion: Assertion, error: str, **detail: Any) -> AssertionResult:
    return AssertionResult(assertion.label, assertion.kind, 0.0, False, assertion.weight, error, error, detail)


class PythonFunctions:
    """Resolves ``module:function`` and ``file.py:function`` references once per run (suite-relative files)."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir
        self._loaded: dict[str, Callable[..., Any]] = {}

    def get(self, reference: str) -> Callable[..., Any]:
        if reference not in self._loaded:
            self._loaded[reference] = self._load(reference)
        return self._loaded[reference]

    def _load(self, reference: str) -> Callable[..., Any]:
        target, sep, name = reference.rpartition(":")
        if not sep or not target or not name:
            raise ValueError(
                f"python function reference must be 'module:function' or 'file.py:function': {reference!r}"
            )
        if target.endswith(".py"):
            path = (self._base_dir / target).resolve()
            spec = importlib.util.spec_from_file_location(f"modelyard_eval_{path.stem}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise ValueError(f"python assertion file not found: {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        function = getattr(module, name, None)
        if not callable(function):
            raise ValueError(f"{target} has no function {name!r}")
        return function


def expected_value(assertion: Assertion, case: Case, explicit: Any) -> Any:
    return explicit if explicit is not None else case.expected


def score(assertion: Assertion, case: Case, observation: Observation, functions: PythonFunctions) -> AssertionResult:
    """Score a deterministic (non-judge) assertion. Output ``None`` means the call failed: every check fails."""
    if isinstance(assertion, LlmJudge):
        raise TypeError("llm-judge assertions are scored by modelyard.evals.judge")
    if isinstance(assertion, MaxLatencyMs):
        if observation.latency_ms is None:
            return error_result(assertion, "no latency measured (the call failed)")
        ok = observation.latency_ms <= assertion.value
        return result(assertion, ok, f"{observation.latency_ms:.0f} ms vs max {assertion.value:g} ms")
    if isinstance(assertion, MaxTokens):
        if observation.completion_tokens is None:
            return error_result(assertion, "no token count (the call failed or the engine sent no usage)")
        ok = observation.completion_tokens <= assertion.value
        return result(assertion, ok, f"{observation.completion_tokens} tokens vs max {assertion.value}")
    output = observation.output
    if output is None:
        return error_result(assertion, "no output (the call failed)")
    try:
        return _score_text(assertion, case, output, functions)
    except Exception as exc:  # a user's function or schema misbehaving is a failed check, not a crash
        return error_result(assertion, f"{type(exc).__name__}: {exc}")


def _score_text(assertion: Assertion, case: Case, output: str, functions: PythonFunctions) -> AssertionResult:
    if isinstance(assertion, Equals):
        expected = expected_value(assertion, case, assertion.value)
        got, want = output.strip(), str(expected).strip()
        if assertion.ignore_case:
            got, want = got.casefold(), want.casefold()
        return result(assertion, got == want, f"expected {want!r}")
    if isinstance(assertion, Contains):
        expected = str(expected_value(assertion, case, assertion.value))
        haystack, needle = (output.casefold(), expected.casefold()) if assertion.ignore_case else (output, expected)
        return result(assertion, needle in haystack, f"looked for {expected!r}")
    if isinstance(assertion, ContainsAny):
        values = expected_value(assertion, case, assertion.values)
        values = [values] if isinstance(values, str) else [str(v) for v in values]
        haystack = output.casefold() if assertion.ignore_case else output
        found = [v for v in values if (v.casefold() if assertion.ignore_case else v) in haystack]
        return result(assertion, bool(found), f"found {found!r}" if found else f"none of {values!r}")
    if isinstance(assertion, Regex):
        flags = re.IGNORECASE if assertion.ignore_case else 0
        match = re.search(assertion.pattern, output, flags)
        return result(assertion, match is not None, f"/{assertion.pattern}/ " + ("matched" if match else "no match"))
    if isinstance(assertion, IsJson):
        parsed, problem = parse_json_output(output)
        return result(assertion, problem is None, problem or "valid JSON")
    if isinstance(assertion, JsonSchema):
        from jsonschema import Draft202012Validator

        parsed, problem = parse_json_output(output)
        if problem is not None:
            return result(assertion, False, problem)
        errors = sorted(Draft202012Validator(assertion.schema).iter_errors(parsed), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.path) or "(root)"
            return result(assertion, False, f"{where}: {first.message}")
        return result(assertion, True, "matches the schema")
    if isinstance(assertion, Python):
        value = functions.get(assertion.function)(output, _case_dict(case))
        return _python_result(assertion, value)
    raise TypeError(f"unknown assertion type {assertion.kind}")


def parse_json_output(output: str) -> tuple[Any, str | None]:
    """Parse a model's JSON answer, tolerating a Markdown code fence around it."""
    text = output.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def _python_result(assertion: Python, value: Any) -> AssertionResult:
    if isinstance(value, bool):
        return result(assertion, 1.0 if value else 0.0, f"{assertion.function} returned {value}")
    if isinstance(value, int | float):
        return result(assertion, float(value), f"{assertion.function} returned {value}")
    if isinstance(value, dict):
        raw = value.get("score", 1.0 if value.get("pass") else 0.0)
        outcome = result(assertion, float(raw), str(value.get("reason", "")))
        if "pass" in value:
            return AssertionResult(**{**outcome.__dict__, "passed": bool(value["pass"])})
        return outcome
    return error_result(
        assertion, f"{assertion.function} returned {type(value).__name__}; expected bool, float or dict"
    )


def _case_dict(case: Case) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(case)


def case_outcome(results: list[AssertionResult], case_threshold: float | None) -> tuple[bool, float]:
    """A case's weighted score, and whether it passed (all assertions, or score >= the suite's case threshold)."""
    total_weight = sum(r.weight for r in results)
    weighted = sum(r.score * r.weight for r in results) / total_weight if total_weight else 1.0
    if case_threshold is None:
        return all(r.passed for r in results), weighted
    return weighted >= case_threshold, weighted
