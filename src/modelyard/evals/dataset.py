"""Eval datasets: JSONL, one case per line (a chat ``messages`` list or a completion ``prompt``).

Every line is validated before any request is sent; an error names the file, the line, the case id and the
field, because a broken line found mid-run would waste every call made before it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from modelyard.evals.suite import Assertion, Suite, SuiteError, describe_validation_error


class Message(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class Case(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str | None = None
    messages: list[Message] | None = None
    prompt: str | None = None
    expected: Any = None
    metadata: dict[str, Any] = {}
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # Extra assertions for this case only, added to the suite's.
    assertions: list[Assertion] = msgspec.field(name="assert", default_factory=list)


@dataclass(frozen=True)
class Dataset:
    path: Path
    sha256: str
    cases: tuple[Case, ...]


def load_dataset(suite: Suite) -> Dataset:
    path = suite.dataset_path
    if not path.is_file():
        raise SuiteError(f"{suite.path}: field 'dataset': dataset file not found: {path}")
    raw = path.read_bytes()
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        where = f"{path}: line {number}"
        try:
            data = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise SuiteError(f"{where}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SuiteError(f"{where}: a case is a JSON object, got {type(data).__name__}")
        label = f"{where} (case {data.get('id')!r})" if isinstance(data.get("id"), str) else where
        try:
            case = msgspec.convert(data, Case)
        except msgspec.ValidationError as exc:
            raise SuiteError(f"{label}: {describe_validation_error(exc)}") from None
        if case.id is None:
            case = msgspec.structs.replace(case, id=f"line-{number}")
        assert case.id is not None
        if (case.messages is None) == (case.prompt is None):
            raise SuiteError(f"{label}: field 'messages'/'prompt': give exactly one of them")
        if case.messages is not None and not case.messages:
            raise SuiteError(f"{label}: field 'messages': must not be empty")
        if case.id in seen:
            raise SuiteError(f"{label}: field 'id': duplicate of line {seen[case.id]}")
        seen[case.id] = number
        for index, assertion in enumerate([*suite.spec.assertions, *case.assertions]):
            if assertion.needs_expected() and case.expected is None:
                raise SuiteError(
                    f"{label}: field 'expected': assertion '{assertion.label}' (#{index}) has no value and "
                    "the case has no 'expected'"
                )
        cases.append(case)
    if not cases:
        raise SuiteError(f"{path}: the dataset has no cases (suite {suite.path})")
    return Dataset(path, hashlib.sha256(raw).hexdigest(), tuple(cases))


def case_assertions(suite: Suite, case: Case) -> list[Assertion]:
    return [*suite.spec.assertions, *case.assertions]


def case_request_input(case: Case) -> dict[str, Any]:
    """The case's input as stored with its result (messages or prompt)."""
    if case.messages is not None:
        return {"messages": [msgspec.to_builtins(m) for m in case.messages]}
    return {"prompt": case.prompt}
