"""Eval suites as files: a YAML document naming a JSONL dataset and the assertions every case must pass.

The schema is data (msgspec structs) so a wrong key or type is refused at load with a message that names the
file and the field (``smoke.yaml: assertions[1].threshold: Expected `float`, got `str```), never halfway
through a run that already cost model time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

Weight = Annotated[float, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class SuiteError(ValueError):
    """A suite or dataset that cannot be run; the message names the file, the case and the field."""


class _Assertion(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    name: str | None = None  # label in reports; default: the type
    weight: Weight = 1.0
    threshold: Fraction | None = None  # pass when score >= threshold (default: 1 for checks, 0.5 for judges)

    @property
    def kind(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]

    @property
    def label(self) -> str:
        return self.name or self.kind

    def default_threshold(self) -> float:
        return 1.0

    def pass_threshold(self) -> float:
        return self.threshold if self.threshold is not None else self.default_threshold()

    def needs_expected(self) -> bool:
        return False


class Equals(_Assertion, tag="equals"):
    value: Any = None  # default: the case's ``expected``
    ignore_case: bool = False

    def needs_expected(self) -> bool:
        return self.value is None


class Contains(_Assertion, tag="contains"):
    value: str | None = None
    ignore_case: bool = False

    def needs_expected(self) -> bool:
        return self.value is None


class ContainsAny(_Assertion, tag="contains-any"):
    values: list[str] | None = None
    ignore_case: bool = True

    def needs_expected(self) -> bool:
        return self.values is None


class Regex(_Assertion, tag="regex"):
    pattern: NonEmpty
    ignore_case: bool = False

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None


class IsJson(_Assertion, tag="is-json"):
    pass


class JsonSchema(_Assertion, tag="json-schema"):
    schema: dict[str, Any]

    def __post_init__(self) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(self.schema)
        except SchemaError as exc:
            raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None


class MaxLatencyMs(_Assertion, tag="max-latency-ms"):
    value: PositiveFloat


class MaxTokens(_Assertion, tag="max-tokens"):
    value: PositiveInt


class LlmJudge(_Assertion, tag="llm-judge"):
    rubric: NonEmpty
    judge: str | None = None  # a route served by modelyard; default: the suite's judge, else the target
    mode: Literal["chat", "completion"] = "chat"  # completion suits base models (the answer is prefilled)
    max_tokens: PositiveInt = 128

    def default_threshold(self) -> float:
        return 0.5


class Python(_Assertion, tag="python"):
    function: NonEmpty  # "package.module:function" or "relative/file.py:function"

    def default_threshold(self) -> float:
        return 0.5


Assertion = Equals | Contains | ContainsAny | Regex | IsJson | JsonSchema | MaxLatencyMs | MaxTokens | LlmJudge | Python


class Defaults(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request settings for every case (a case may override max_tokens and timeout_s)."""

    max_tokens: PositiveInt = 128
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.0
    seed: int | None = 42
    timeout_s: PositiveFloat = 120.0
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4
    system: str | None = None  # prepended as a system message to chat cases


class SuiteSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
    dataset: NonEmpty  # JSONL path, relative to the suite file
    description: str = ""
    pass_threshold: Fraction = 1.0  # share of cases that must pass for the run to pass (exit code 0)
    case_threshold: Fraction | None = None  # None: a case passes when all its assertions pass; else weighted score
    judge: str | None = None
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    assertions: list[Assertion] = []


@dataclass(frozen=True)
class Suite:
    spec: SuiteSpec
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dataset_path(self) -> Path:
        return (self.path.parent / self.spec.dataset).resolve()

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self.spec)


def load_suite(path: Path) -> Suite:
    """Read and validate a suite file (the dataset is loaded separately, see :mod:`modelyard.evals.dataset`)."""
    if not path.is_file():
        raise SuiteError(f"{path}: suite file not found")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping (name, dataset, assertions), got {type(data).__name__}")
    spec = convert(data, SuiteSpec, where=str(path))
    return Suite(spec, path.resolve(), hashlib.sha256(raw).hexdigest())


def convert(data: Any, kind: type[Any], where: str) -> Any:
    """``msgspec.convert`` with the error rewritten as ``WHERE: field.path: what is wrong``."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise SuiteError(f"{where}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: msgspec.ValidationError) -> str:
    """msgspec says "Expected `int`, got `str` - at `$.defaults.retries`"; we say "defaults.retries: Expected …"."""
    text = str(exc)
    message, sep, location = text.rpartition(" - at `")
    if not sep:
        return text
    field = location.rstrip("`").removeprefix("$").lstrip(".") or "(document)"
    return f"field '{field}': {message}"
