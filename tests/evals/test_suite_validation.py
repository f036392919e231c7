"""Suite and dataset validation: every error names the file, the case and the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.evals.dataset import load_dataset
from modelyard.evals.suite import Contains, LlmJudge, SuiteError, load_suite

SUITE = """
name: smoke
dataset: cases.jsonl
pass_threshold: 0.5
assertions:
  - type: contains
    ignore_case: true
  - type: max-tokens
    value: 64
    weight: 0.5
"""


def test_a_valid_suite_and_dataset_load(write_suite: Callable[..., Path]) -> None:
    path = write_suite(SUITE, [{"id": "a", "prompt": "x", "expected": "y"},
                              {"messages": [{"role": "user", "content": "hi"}], "expected": "hello",
                               "assert": [{"type": "llm-judge", "rubric": "is polite"}]}])  # fmt: skip
    suite = load_suite(path)
    assert suite.name == "smoke" and suite.spec.pass_threshold == 0.5
    assert isinstance(suite.spec.assertions[0], Contains) and suite.spec.assertions[0].ignore_case
    dataset = load_dataset(suite)
    assert [c.id for c in dataset.cases] == ["a", "line-2"]
    assert isinstance(dataset.cases[1].assertions[0], LlmJudge)
    assert dataset.cases[1].assertions[0].pass_threshold() == 0.5


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        ("name: s\ndataset: c.jsonl\nassertions:\n  - type: regex\n",
         r"field 'assertions\[0\]': Object missing required field `pattern`"),
        ("name: s\ndataset: c.jsonl\nassertions:\n  - type: nope\n",
         r"field 'assertions\[0\].type': Invalid value 'nope'"),
        ("name: s\ndataset: c.jsonl\nassertions:\n  - {type: contains, weight: -1}\n",
         r"field 'assertions\[0\].weight'"),
        ("name: s\ndataset: c.jsonl\ndefaults: {retries: many}\n", r"field 'defaults.retries': Expected `int`"),
        ("name: s\ndataset: c.jsonl\ncolour: red\n", r"unknown field `colour`"),
        ("name: s\ndataset: c.jsonl\nassertions:\n  - {type: regex, pattern: '('}\n", "not a valid regular expression"),
        ("name: s\ndataset: c.jsonl\nassertions:\n  - {type: json-schema, schema: {type: 3}}\n",
         "not a valid JSON Schema"),
        ("- just a list\n", "a suite is a YAML mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_suite_errors_name_the_file_and_field(write_suite: Callable[..., Path], suite: str, message: str) -> None:
    path = write_suite(suite)
    with pytest.raises(SuiteError, match=message) as caught:
        load_suite(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        (['{"id": "q1", "prompt": "x", "expected": "y"}', "{not json"], r"line 2: not valid JSON"),
        ([{"id": "q1", "prompt": "x", "expected": "y"}, {"id": "q2", "messages": [{"role": "robot", "content": "x"}],
          "expected": "y"}], r"line 2 \(case 'q2'\): field 'messages\[0\].role'"),
        ([{"id": "q1", "expected": "y"}], r"line 1 \(case 'q1'\): field 'messages'/'prompt': give exactly one"),
        ([{"id": "q1", "prompt": "x"}], r"case 'q1'\): field 'expected': assertion 'contains'"),
        ([{"id": "q1", "prompt": "x", "expected": "y"}, {"id": "q1", "prompt": "z", "expected": "y"}],
         r"case 'q1'\): field 'id': duplicate of line 1"),
        ([{"id": "q1", "prompt": "x", "expected": "y", "max_tokens": 0}], r"field 'max_tokens': Expected `int` >= 1"),
        ([{"id": "q1", "prompt": "x", "expected": "y", "assert": [{"type": "equals", "valu": 1}]}],
         r"field 'assert\[0\]': Object contains unknown field `valu`"),
    ],
)  # fmt: skip
def test_dataset_errors_name_file_line_case_and_field(
    write_suite: Callable[..., Path], cases: list[object], message: str
) -> None:
    suite = load_suite(write_suite(SUITE, cases))
    with pytest.raises(SuiteError, match=message) as caught:
        load_dataset(suite)
    assert "cases.jsonl" in str(caught.value)


def test_missing_and_empty_datasets_are_clear(write_suite: Callable[..., Path], tmp_path: Path) -> None:
    suite = load_suite(write_suite(SUITE.replace("cases.jsonl", "absent.jsonl")))
    with pytest.raises(SuiteError, match=r"field 'dataset': dataset file not found: .*absent.jsonl"):
        load_dataset(suite)
    suite = load_suite(write_suite(SUITE, []))
    with pytest.raises(SuiteError, match="the dataset has no cases"):
        load_dataset(suite)
    with pytest.raises(SuiteError, match="suite file not found"):
        load_suite(tmp_path / "nope.yaml")
