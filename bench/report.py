"""Where results go: a rich table on the terminal, a JSON file per run, and a PNG per scenario.

JSON lands in ``bench/results/`` (git-ignored) as ``<scenario>-<UTC time>.json`` plus ``<scenario>.json`` for the
latest run; plots are written next to it and, with ``--publish``, also to ``docs/bench/`` (tracked, shown in the
README).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.procs import REPO

RESULTS = REPO / "bench" / "results"
PUBLISHED = REPO / "docs" / "bench"


def machine() -> dict[str, Any]:
    """What the numbers were measured on (the load average says how shared the machine was)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_end": os.getloadavg(),
        "commit": commit,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(scenario: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"scenario": scenario, "machine": machine(), **data}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"{scenario}-{stamp}.json"
    text = json.dumps(data, indent=2, default=_jsonable)
    path.write_text(text)
    (RESULTS / f"{scenario}.json").write_text(text)
    return path


def _jsonable(value: object) -> object:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}  # type: ignore[attr-defined]
    return str(value)


def save_plot(figure: Any, scenario: str, publish: bool) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    if publish:
        PUBLISHED.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, PUBLISHED / f"{scenario}.png")
    return path


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    result = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        result.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        result.add_row(*row)
    return result


def console() -> Console:
    return Console(width=160)
