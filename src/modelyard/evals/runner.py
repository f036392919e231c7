"""Run a suite against a gateway target: every case concurrently (bounded), scored, summarised.

The runner returns a :class:`RunRecord` and never writes anything itself; the caller stores it in one
transaction. When the gateway cannot serve the run (see :mod:`modelyard.evals.client`) or the run is
interrupted, the remaining cases are cancelled and the record says ``aborted`` with the reason — it is never
presented as complete. Cached mode takes each case's output from an earlier run and only re-scores it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard.evals.assertions import (
    AssertionResult,
    Observation,
    PythonFunctions,
    case_outcome,
    error_result,
    result,
    score,
)
from modelyard.evals.client import CaseFailed, GatewayClient, GatewayUnavailable
from modelyard.evals.dataset import Case, Dataset, case_assertions, case_request_input
from modelyard.evals.judge import judge_request, parse_verdict
from modelyard.evals.records import ABORTED, COMPLETE, CaseResult, RunRecord
from modelyard.evals.suite import LlmJudge, Suite
from modelyard.store.base import utcnow

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RunOptions:
    target: str
    gateway_url: str
    actor: str
    concurrency: int | None = None  # default: the suite's
    temperature: float | None = None
    seed: int | None = None
    cached: RunRecord | None = None  # re-score this run's outputs instead of calling the model


def new_run_id() -> str:
    return "run-" + uuid.uuid4().hex[:12]


async def run_suite(
    suite: Suite, dataset: Dataset, client: GatewayClient, options: RunOptions, progress: Progress | None = None
) -> RunRecord:
    defaults = suite.spec.defaults
    temperature = options.temperature if options.temperature is not None else defaults.temperature
    seed = options.seed if options.seed is not None else defaults.seed
    functions = PythonFunctions(suite.path.parent)
    cached = {c.case_id: c for c in options.cached.cases} if options.cached is not None else None
    semaphore = asyncio.Semaphore(options.concurrency or defaults.concurrency)
    finished: list[CaseResult] = []
    started_at = utcnow()
    abort_reason: str | None = None

    async def one(position: int, case: Case) -> None:
        async with semaphore:
            outcome = await _run_case(
                suite, case, position, client, options.target, temperature, seed, functions, cached
            )
        finished.append(outcome)
        if progress is not None:
            progress(len(finished), len(dataset.cases), outcome.case_id)

    tasks = [asyncio.create_task(one(i, case)) for i, case in enumerate(dataset.cases)]
    try:
        await _gather_or_abort(tasks)
    except GatewayUnavailable as exc:
        abort_reason = str(exc)
    except asyncio.CancelledError:
        abort_reason = "interrupted before every case finished"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    cases = tuple(sorted(finished, key=lambda c: c.position))
    if abort_reason is None and len(cases) != len(dataset.cases):
        abort_reason = f"only {len(cases)} of {len(dataset.cases)} cases finished"
    return RunRecord(
        run_id=new_run_id(),
        suite=suite.name,
        suite_sha256=suite.sha256,
        dataset_sha256=dataset.sha256,
        target=options.target,
        gateway_url=options.gateway_url,
        status=ABORTED if abort_reason else COMPLETE,
        pass_threshold=suite.spec.pass_threshold,
        temperature=temperature,
        seed=seed,
        created_by=options.actor,
        started_at=started_at,
        finished_at=utcnow(),
        version=_answering_version(cases, options.cached),
        cases=cases,
        cached_from=options.cached.run_id if options.cached is not None else None,
        abort_reason=abort_reason,
        config={"suite": suite.to_json(), "suite_path": str(suite.path), "dataset_path": str(dataset.path)},
    )


async def _gather_or_abort(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for all cases; the first GatewayUnavailable cancels the rest."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def _run_case(
    suite: Suite,
    case: Case,
    position: int,
    client: GatewayClient,
    target: str,
    temperature: float,
    seed: int | None,
    functions: PythonFunctions,
    cached: dict[str, CaseResult] | None,
) -> CaseResult:
    defaults = suite.spec.defaults
    kind, body = _request(suite, case, temperature, seed)
    request = {**case_request_input(case), **{k: v for k, v in body.items() if k not in ("messages", "prompt")}}
    error: str | None = None
    attempts = 1
    answered_by = ""
    if cached is not None:
        previous = cached.get(case.id or "")
        if previous is None:
            observation = Observation(None)
            error = "case not present in the cached run"
        else:
            observation = Observation(
                previous.output, previous.latency_ms, previous.prompt_tokens, previous.completion_tokens
            )
            answered_by, error = previous.answered_by, previous.error if previous.output is None else None
    else:
        try:
            reply = await client.generate(target, kind, body, case.timeout_s or defaults.timeout_s)
            observation = Observation(reply.text, reply.latency_ms, reply.prompt_tokens, reply.completion_tokens)
            attempts, answered_by = reply.attempts, reply.version
        except CaseFailed as exc:
            observation, error, attempts = Observation(None), str(exc), exc.attempts
    results: list[AssertionResult] = []
    for assertion in case_assertions(suite, case):
        if isinstance(assertion, LlmJudge):
            results.append(await _judge(assertion, suite, case, observation, client, target, seed))
        else:
            results.append(score(assertion, case, observation, functions))
    passed, weighted = case_outcome(results, suite.spec.case_threshold)
    if error is None:
        errors = [r.error for r in results if r.error]
        error = f"{len(errors)} assertion error(s): {errors[0]}" if errors else None
    if error is not None:
        passed = False
    return CaseResult(
        position=position,
        case_id=case.id or f"case-{position}",
        request=request,
        expected=case.expected,
        metadata=dict(case.metadata),
        output=observation.output,
        passed=passed,
        score=weighted,
        error=error,
        assertions=tuple(r.to_json() for r in results),
        latency_ms=observation.latency_ms,
        prompt_tokens=observation.prompt_tokens,
        completion_tokens=observation.completion_tokens,
        answered_by=answered_by,
        attempts=attempts,
    )


def _request(suite: Suite, case: Case, temperature: float, seed: int | None) -> tuple[str, dict[str, Any]]:
    defaults = suite.spec.defaults
    body: dict[str, Any] = {"max_tokens": case.max_tokens or defaults.max_tokens, "temperature": temperature}
    if seed is not None:
        body["seed"] = seed
    if case.messages is not None:
        messages = [{"role": m.role, "content": m.content} for m in case.messages]
        if defaults.system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": defaults.system})
        return "chat", {**body, "messages": messages}
    return "completion", {**body, "prompt": case.prompt}


async def _judge(
    assertion: LlmJudge,
    suite: Suite,
    case: Case,
    observation: Observation,
    client: GatewayClient,
    target: str,
    seed: int | None,
) -> AssertionResult:
    if observation.output is None:
        return error_result(assertion, "no output to judge (the call failed)")
    route = assertion.judge or suite.spec.judge or target
    kind, body = judge_request(assertion, case_request_input(case), observation.output, 0.0, seed)
    try:
        reply = await client.generate(route, kind, body, suite.spec.defaults.timeout_s)
    except CaseFailed as exc:
        return error_result(assertion, f"judge '{route}' failed: {exc}", judge=route)
    verdict = parse_verdict(reply.text, prefilled=kind == "completion")
    detail = {"judge": reply.version or route, "raw": verdict.raw, "reasoning": verdict.reasoning}
    if verdict.score is None:
        return error_result(assertion, f"judge output unparsable: {verdict.error}", **detail)
    return result(assertion, verdict.score, verdict.reasoning or f"judge score {verdict.score:g}", **detail)


def _answering_version(cases: tuple[CaseResult, ...], cached: RunRecord | None) -> str | None:
    counts = Counter(c.answered_by for c in cases if c.answered_by)
    if counts:
        return counts.most_common(1)[0][0]
    return cached.version if cached is not None else None
