"""docs/scaling.md's arithmetic, checked against the benchmark tables it cites.

Both documents are parsed: every input the guide names must be the figure in the README's Performance tables, and
every step of the worked example is recomputed from those inputs (the formula column is evaluated, with nothing but
numbers, the inputs, arithmetic, ``ceil`` and ``floor``) and must equal the result the guide prints, to the digits
it prints."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "scaling.md").read_text()
README = (ROOT / "README.md").read_text()


def section(text: str, heading: str) -> str:
    """The text under a Markdown heading that starts with ``heading``, up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}.*?$(.*?)(?=^#+ |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, heading
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|\s*-", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def number(cell: str) -> float:
    """The first number of a table cell: bold and thin-space thousands separators allowed (``**9 314** (…)``)."""
    match = re.search(r"-?\d[\d ]*(?:\.\d+)?", cell.replace("*", ""))
    assert match, cell
    return float(match.group(0).replace(" ", ""))


def readme_figures() -> dict[str, float]:
    """The README's figures the guide may cite, each parsed from its own table or sentence."""
    s1 = next(row for row in table_rows(section(README, "Scenario 1")) if "**modelyard**" in row[0])
    watched = next(row for row in table_rows(section(README, "Cost of watching")) if "all on" in row[0])
    auth = re.search(r"paired ratio (\d\.\d+)\N{MULTIPLICATION SIGN}", section(README, "Cost of auth and limits"))
    assert auth
    memory = table_rows(section(README, "Scenario 4"))[0]

    def engine(concurrency: int) -> list[str]:
        return next(row for row in table_rows(section(README, "Scenario 3")) if row[0] == str(concurrency))

    tokens = re.search(r"(\d+) tokens per request", README[README.index("### Scenario 3") :])
    assert tokens
    return {
        "gateway_rps": number(s1[1]),
        "watched_ratio": number(watched[2]),
        "auth_limits_ratio": float(auth.group(1)),
        "added_p50_ms": number(s1[3]),
        "engine_tps_c1": number(engine(1)[2]),
        "engine_tps_c4": number(engine(4)[2]),
        "engine_tps_c8": number(engine(8)[2]),
        "ttft_c1_ms": number(engine(1)[4].split("/")[1]),
        "ttft_c8_ms": number(engine(8)[4].split("/")[1]),
        "bench_tokens": float(tokens.group(1)),
        "gateway_rss_mb": number(memory[3]),
    }


def guide_inputs() -> dict[str, float]:
    return {row[0].strip("`"): float(row[1]) for row in table_rows(section(GUIDE, "The inputs"))}


def guide_steps() -> list[tuple[str, str, str]]:
    return [(row[0], row[1].strip("`"), row[2]) for row in table_rows(section(GUIDE, "Worked example"))]


_OPERATORS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FUNCTIONS: dict[str, Callable[[float], float]] = {"ceil": math.ceil, "floor": math.floor}


def evaluate(formula: str, names: dict[str, float]) -> float:
    """Arithmetic on numbers and named inputs, nothing else (no eval)."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
            return float(_FUNCTIONS[node.func.id](walk(node.args[0])))
        raise ValueError(f"not plain arithmetic: {ast.dump(node)}")

    return walk(ast.parse(formula, mode="eval"))


def test_every_input_is_the_benchmark_tables_figure() -> None:
    inputs, figures = guide_inputs(), readme_figures()
    assert set(inputs) <= set(figures), set(inputs) - set(figures)
    assert len(inputs) >= 10
    for name, value in inputs.items():
        assert value == figures[name], (name, value, figures[name])


@pytest.mark.parametrize("step", guide_steps(), ids=lambda step: step[0])
def test_every_step_of_the_worked_example_adds_up(step: tuple[str, str, str]) -> None:
    _, formula, printed = step
    computed = evaluate(formula, guide_inputs())
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    assert round(computed, decimals) == pytest.approx(float(printed)), (formula, computed, printed)


def test_the_conclusions_quote_the_worked_examples_results() -> None:
    results = {name: float(printed) for name, _, printed in guide_steps()}
    assert f"**{int(results['engine replicas with one spare'])} engine replicas**" in GUIDE
    assert f"{int(results['engine cores (2 threads each)'])} cores" in GUIDE
    assert results["engine replicas for the tokens"] == results["engine replicas for the slots"]
    assert f"about {round(results['engine replicas one gateway worker can feed'], -2):,.0f}".replace(",", " ") in GUIDE
    assert f"{int(results['gateway workers for 8 000 requests/s'])} workers carry" in GUIDE
    in_flight = results["requests in flight (Little's law)"]
    assert f"{round(in_flight)} requests are in flight across 2 gateways, {round(in_flight / 2)} each" in GUIDE


def test_a_wrong_result_would_be_caught() -> None:
    """The check can fail: a step with a changed printed result does not add up."""
    _, formula, printed = guide_steps()[0]
    computed = evaluate(formula, guide_inputs())
    assert round(computed, 1) != pytest.approx(float(printed) + 1)
    with pytest.raises(ValueError, match="not plain arithmetic"):
        evaluate("__import__('os')", {})
