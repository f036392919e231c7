"""``modelyard models`` from a shell: clear messages and distinct exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MODELYARD_DATA_DIR": str(tmp_path / "data"), **env},
    )


def test_an_unreachable_database_is_one_clear_line_and_exit_3(tmp_path: Path) -> None:
    result = run(tmp_path, "models", "list", MODELYARD_DATABASE_URL="postgresql://u:hunter2@127.0.0.1:1/x")
    assert result.returncode == 3
    assert "registry database (postgresql+psycopg://u:***@127.0.0.1:1/x) is unavailable" in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


def test_register_list_show_and_errors(tmp_path: Path, gguf_file: Callable[..., Path]) -> None:
    assert "No registered models yet" in run(tmp_path, "models", "list").stdout
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    refused = run(tmp_path, "models", "register", str(notes), "--name", "tiny")
    assert refused.returncode == 2 and "not a GGUF file" in refused.stderr

    registered = run(tmp_path, "models", "register", str(gguf_file(1)), "--name", "tiny", "--tag", "team=search",
                     "--training-data", "c4", "--actor", "alice", "--json")  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    version = json.loads(registered.stdout)
    assert (version["key"], version["created_by"], version["training_data"]) == ("tiny:1", "alice", ["c4"])

    listed = run(tmp_path, "models", "list").stdout
    assert "tiny" in listed and "Production" in listed
    shown = run(tmp_path, "models", "show", "tiny").stdout
    assert "tiny: versions" in shown and "alias 'production' moved (none) → 1" in shown
    missing = run(tmp_path, "models", "show", "nope")
    assert missing.returncode == 2 and "No registered model named 'nope'" in missing.stderr
    bad_tag = run(tmp_path, "models", "register", str(gguf_file(2)), "--name", "tiny", "--tag", "oops")
    assert bad_tag.returncode == 2 and "KEY=VALUE" in bad_tag.stderr
