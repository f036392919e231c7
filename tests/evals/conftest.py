"""Eval fixtures: registry stores on SQLite and PostgreSQL (reusing the registry's), suite files on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.conftest import checker, database, gguf_file, store  # noqa: F401  (fixtures shared with the registry)


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[..., Path]:
    """Write ``suite.yaml`` and its JSONL dataset; ``cases`` are dicts or raw strings (broken lines)."""

    def write(suite: str, cases: list[object] | None = None, dataset: str = "cases.jsonl") -> Path:
        path = tmp_path / "suite.yaml"
        path.write_text(suite)
        if cases is not None:
            lines = [c if isinstance(c, str) else json.dumps(c) for c in cases]
            (tmp_path / dataset).write_text("\n".join(lines) + ("\n" if lines else ""))
        return path

    return write
