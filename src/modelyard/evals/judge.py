"""LLM-as-judge: ask a model served by modelyard to score an output against a rubric, and read its verdict.

Judges — small ones especially — do not always answer in the requested format. The parser therefore tries, in
order: a JSON object with ``score``; ``score: N`` / ``N/10`` / a percentage; a lone number in [0, 1]. When none
is found the assertion is an *error* that keeps the judge's raw text, so a person can see what it said; the run
goes on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from modelyard.evals.suite import LlmJudge

COMPLETION_PREFILL = '{"score": '

_INSTRUCTIONS = (
    "You are a strict evaluator. Grade the RESPONSE against the RUBRIC. "
    'Answer with one JSON object and nothing else: {"score": <number from 0 to 1>, "reasoning": "<one sentence>"}.'
)


@dataclass(frozen=True)
class Verdict:
    score: float | None
    reasoning: str
    raw: str
    error: str | None = None


def judge_request(
    assertion: LlmJudge, case_input: dict[str, Any], output: str, temperature: float, seed: int | None
) -> tuple[str, dict[str, Any]]:
    """The endpoint (``chat`` or ``completion``) and body for one judgement."""
    question = _render_input(case_input)
    body: dict[str, Any] = {"max_tokens": assertion.max_tokens, "temperature": temperature}
    if seed is not None:
        body["seed"] = seed
    text = f"RUBRIC:\n{assertion.rubric}\n\nINPUT:\n{question}\n\nRESPONSE:\n{output}\n"
    if assertion.mode == "chat":
        body["messages"] = [
            {"role": "system", "content": _INSTRUCTIONS},
            {"role": "user", "content": text},
        ]
        return "chat", body
    body["prompt"] = f"{_INSTRUCTIONS}\n\n{text}\nVERDICT: {COMPLETION_PREFILL}"
    return "completion", body


def parse_verdict(raw: str, prefilled: bool = False) -> Verdict:
    """Read a judge's answer. Never raises: unparsable text becomes a verdict with ``error`` set and the raw kept."""
    text = (COMPLETION_PREFILL + raw) if prefilled else raw
    found = _from_json(text)
    if found is not None:
        return Verdict(found[0], found[1], raw)
    value = _from_text(text)
    if value is not None:
        return Verdict(value, _strip(text), raw)
    return Verdict(None, "", raw, error="the judge's answer has no score in [0, 1]")


def _from_json(text: str) -> tuple[float, str] | None:
    for match in re.finditer(r"\{[^{}]*\}", text, re.DOTALL):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if (
            isinstance(data, dict)
            and isinstance(data.get("score"), int | float)
            and not isinstance(data["score"], bool)
        ):
            value = _normalise(float(data["score"]))
            if value is not None:
                return value, str(data.get("reasoning", data.get("reason", "")))
    return None


def _from_text(text: str) -> float | None:
    patterns = (
        (r"score\W{0,3}\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?", None),
        (r"(\d+(?:\.\d+)?)\s*/\s*(10|5|100)\b", None),
        (r"(\d+(?:\.\d+)?)\s*%", 100.0),
    )
    for pattern, scale in patterns:
        match = re.search(pattern, text, re.IGNORECASE)
        if not match:
            continue
        number = float(match.group(1))
        denominator = scale or (
            float(match.group(2)) if match.lastindex and match.lastindex >= 2 and match.group(2) else None
        )
        value = number / denominator if denominator else _normalise(number)
        if value is not None and 0.0 <= value <= 1.0:
            return value
    lone = re.fullmatch(r"\s*(0(?:\.\d+)?|1(?:\.0+)?)\s*[.,;]?\s*", text)
    return float(lone.group(1)) if lone else None


def _normalise(value: float) -> float | None:
    """Scores in [0, 1] as they are; a judge that used 0-10 or 0-100 is rescaled; anything else is unusable."""
    if 0.0 <= value <= 1.0:
        return value
    if 1.0 < value <= 10.0 and value == int(value):
        return value / 10.0
    if 10.0 < value <= 100.0 and value == int(value):
        return value / 100.0
    return None


def _strip(text: str) -> str:
    return " ".join(text.split())[:500]


def _render_input(case_input: dict[str, Any]) -> str:
    if "messages" in case_input:
        return "\n".join(f"{m['role']}: {m['content']}" for m in case_input["messages"])
    return str(case_input.get("prompt", ""))
