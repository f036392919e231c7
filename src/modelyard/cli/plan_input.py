"""What `experiments create` and `rollout start` read alike: a YAML file of keys that flags override, and
repeatable ``METRIC=ALLOWED`` guardrails. Bad input exits 2 with the file or flag named, before anything changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


def load_mapping(path: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in ``path`` (``what`` names it in the error: "an experiment", "a plan")."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(f"{path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise _fail(f"{path}: {what} is a mapping of keys")
    return loaded


def parse_guardrails(items: list[str]) -> dict[str, float]:
    """``--guardrail METRIC=ALLOWED`` flags as a mapping (the plan validators check the metric names)."""
    result: dict[str, float] = {}
    for item in items:
        metric, _, allowed = item.partition("=")
        try:
            result[metric.strip()] = float(allowed)
        except ValueError:
            raise _fail(f"--guardrail {item!r}: expected METRIC=ALLOWED, e.g. latency=0.2") from None
    return result
