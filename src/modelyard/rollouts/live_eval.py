"""Live eval score: an eval suite's deterministic assertions applied to sampled live answers of each arm.

A live request whose prompt is one of the suite's cases (the same messages, or the same prompt) is scored with
that case's assertions and expected value, exactly as an offline eval run would score it; any other sampled
request is scored with the suite-level assertions that need no expected value (is-json, max-tokens, a regex ...).
A request neither can score (no such assertions, no stored bodies) is left out. LLM-judge assertions are left out
too: a live look must not wait on another model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.evals.assertions import Observation, PythonFunctions, case_outcome, score
from modelyard.evals.dataset import Case, Dataset, case_assertions, case_request_input
from modelyard.evals.suite import Assertion, LlmJudge, Suite
from modelyard.routing.compare import answer_text


def _prompt_key(body: dict[str, Any]) -> bytes | None:
    if isinstance(body.get("messages"), list):
        return orjson.dumps(
            [{"role": m.get("role"), "content": m.get("content")} for m in body["messages"] if isinstance(m, dict)]
        )
    if isinstance(body.get("prompt"), str):
        return orjson.dumps(body["prompt"])
    return None


@dataclass(frozen=True)
class LiveScorer:
    suite: Suite
    cases: dict[bytes, Case]
    functions: PythonFunctions

    @classmethod
    def of(cls, suite: Suite, dataset: Dataset) -> LiveScorer:
        cases: dict[bytes, Case] = {}
        for case in dataset.cases:
            key = _prompt_key(case_request_input(case))
            if key is not None:
                cases.setdefault(key, case)
        return cls(suite, cases, PythonFunctions(suite.path.parent))

    def passed(self, row: dict[str, Any]) -> bool | None:
        """Whether one request-log row (with bodies) passes, or None when it cannot be scored."""
        request_body, response_body = row.get("request_body"), row.get("response_body")
        if not request_body or response_body is None:
            return None
        try:
            body = orjson.loads(request_body)
        except orjson.JSONDecodeError:
            return None
        key = _prompt_key(body) if isinstance(body, dict) else None
        case = self.cases.get(key) if key is not None else None
        assertions: list[Assertion]
        if case is not None:
            assertions = [a for a in case_assertions(self.suite, case) if not isinstance(a, LlmJudge)]
        else:
            case = Case()
            assertions = [a for a in self.suite.spec.assertions if _standalone(a)]
        if not assertions:
            return None
        output = answer_text(response_body.encode(), bool(row.get("stream"))) if row.get("status") == 200 else None
        observation = Observation(
            output, row.get("duration_ms"), row.get("prompt_tokens"), row.get("completion_tokens")
        )
        results = [score(a, case, observation, self.functions) for a in assertions]
        return case_outcome(results, self.suite.spec.case_threshold)[0]


def _standalone(assertion: Assertion) -> bool:
    return not isinstance(assertion, LlmJudge) and not assertion.needs_expected()


def sampled(request_id: str, rate: float) -> bool:
    """A pure function of the request id, so every look scores the same requests."""
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate
