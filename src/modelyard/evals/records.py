"""Plain records of eval runs and quant reports: what the runner produces, the store keeps, reports render.

Summaries (pass rate, per-assertion rates, latency percentiles, token totals) are derived here from the case
results, in one place, so the CLI table, the stored row, the HTML report and the gates all agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelyard.evals.stats import mean, percentile

COMPLETE = "complete"
ABORTED = "aborted"


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


@dataclass(frozen=True)
class CaseResult:
    position: int
    case_id: str
    request: dict[str, Any]  # the case's input (messages or prompt) and the sampling parameters sent
    expected: Any
    metadata: dict[str, Any]
    output: str | None
    passed: bool
    score: float
    error: str | None
    assertions: tuple[dict[str, Any], ...]
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    answered_by: str = ""
    attempts: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "case_id": self.case_id,
            "request": self.request,
            "expected": self.expected,
            "metadata": self.metadata,
            "output": self.output,
            "passed": self.passed,
            "score": self.score,
            "error": self.error,
            "assertions": list(self.assertions),
            "latency_ms": self.latency_ms,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "answered_by": self.answered_by,
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    suite: str
    suite_sha256: str
    dataset_sha256: str
    target: str
    gateway_url: str
    status: str
    pass_threshold: float
    temperature: float
    seed: int | None
    created_by: str
    started_at: datetime
    finished_at: datetime
    version: str | None = None  # "name:N" that answered
    cases: tuple[CaseResult, ...] = ()
    cached_from: str | None = None
    abort_reason: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    report_path: str = ""
    stored_summary: dict[str, Any] | None = None  # set when loaded without cases

    @property
    def summary(self) -> dict[str, Any]:
        if self.stored_summary is not None and not self.cases:
            return self.stored_summary
        return summarise(self.cases, self.pass_threshold)

    @property
    def total(self) -> int:
        return int(self.summary["total"])

    @property
    def pass_rate(self) -> float:
        return float(self.summary["pass_rate"])

    @property
    def threshold_met(self) -> bool:
        return self.status == COMPLETE and self.pass_rate >= self.pass_threshold

    def outcomes(self) -> dict[str, bool]:
        return {c.case_id: c.passed for c in self.cases}

    def to_json(self, with_cases: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "suite": self.suite,
            "suite_sha256": self.suite_sha256,
            "dataset_sha256": self.dataset_sha256,
            "target": self.target,
            "version": self.version,
            "gateway_url": self.gateway_url,
            "status": self.status,
            "pass_threshold": self.pass_threshold,
            "threshold_met": self.threshold_met,
            "temperature": self.temperature,
            "seed": self.seed,
            "cached_from": self.cached_from,
            "abort_reason": self.abort_reason,
            "created_by": self.created_by,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "report_path": self.report_path,
            "summary": self.summary,
        }
        if with_cases:
            data["cases"] = [c.to_json() for c in self.cases]
        return data


def summarise(cases: tuple[CaseResult, ...], pass_threshold: float) -> dict[str, Any]:
    total = len(cases)
    passed = sum(1 for c in cases if c.passed)
    errors = sum(1 for c in cases if not c.passed and c.error)
    per_assertion: dict[str, dict[str, Any]] = {}
    for case in cases:
        for item in case.assertions:
            entry = per_assertion.setdefault(
                item["name"], {"type": item["type"], "passed": 0, "total": 0, "errors": 0, "score_sum": 0.0}
            )
            entry["total"] += 1
            entry["passed"] += 1 if item["passed"] else 0
            entry["errors"] += 1 if item.get("error") else 0
            entry["score_sum"] += float(item["score"])
    for entry in per_assertion.values():
        entry["pass_rate"] = entry["passed"] / entry["total"] if entry["total"] else 0.0
        entry["mean_score"] = entry.pop("score_sum") / entry["total"] if entry["total"] else 0.0
    latencies = [c.latency_ms for c in cases if c.latency_ms is not None]
    completion = [c.completion_tokens for c in cases if c.completion_tokens is not None]
    prompt = [c.prompt_tokens for c in cases if c.prompt_tokens is not None]
    return {
        "total": total,
        "passed": passed,
        "failed": total - passed - errors,
        "errors": errors,
        "pass_rate": passed / total if total else 0.0,
        "pass_threshold": pass_threshold,
        "assertions": per_assertion,
        "latency_ms": {
            "mean": mean(latencies),
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "max": max(latencies) if latencies else None,
        },
        "tokens": {
            "prompt": sum(prompt),
            "completion": sum(completion),
            "mean_completion": mean([float(t) for t in completion]),
        },
    }


@dataclass(frozen=True)
class QuantRecord:
    report_id: str
    base: str  # "name:N"
    candidate: str
    text_path: str
    text_sha256: str
    ctx_size: int
    chunks: int
    ppl_base: float
    ppl_candidate: float
    ppl_ratio: float
    kld_mean: float
    kld_p99: float
    top_token_agreement: float
    created_by: str
    created_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "base": self.base,
            "candidate": self.candidate,
            "text_path": self.text_path,
            "text_sha256": self.text_sha256,
            "ctx_size": self.ctx_size,
            "chunks": self.chunks,
            "ppl_base": self.ppl_base,
            "ppl_candidate": self.ppl_candidate,
            "ppl_ratio": self.ppl_ratio,
            "kld_mean": self.kld_mean,
            "kld_p99": self.kld_p99,
            "top_token_agreement": self.top_token_agreement,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "detail": self.detail,
        }
