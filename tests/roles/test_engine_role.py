"""``modelyard engine --model REF``: what an engine Pod does before it loads anything — resolve the reference, and
refuse an artifact whose bytes are not the registered ones (recorded in the registry, non-zero exit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.registration import Declared, register_file
from modelyard.roles.stores import open_database, registry_store

from gateway_process import free_port
from registry.gguf_files import write_gguf

pytestmark = pytest.mark.engine  # it prepares the cached llama.cpp build, as every engine does


def _engine(tmp_path: Path, env: dict[str, str], reference: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", "engine", "--model", reference, "--port", str(free_port())],
        env={**os.environ, **env, "MODELYARD_DATA_DIR": str(tmp_path / "engine")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_artifact_changed_after_registration_is_refused_and_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'modelyard.db'}"
    database = open_database(url)
    store = registry_store(database)
    artifact = write_gguf(tmp_path / "tiny.gguf", seed=1)
    register_file(store, IntegrityChecker(tmp_path / "integrity"), artifact, "tiny", Declared(), "test")
    write_gguf(artifact, seed=2)  # same size, other bytes
    env = {"MODELYARD_DATABASE_URL": url}
    refused = _engine(tmp_path, env, "tiny:1")
    assert refused.returncode == 1, refused.stderr
    assert "tiny:1 failed its integrity check" in refused.stderr
    events = [e for e in store.events("tiny") if e.kind == "integrity_failed"]
    assert len(events) == 1 and events[0].version == 1
    unknown = _engine(tmp_path, env, "tiny@canary")
    assert unknown.returncode == 2 and "model 'tiny' has no alias 'canary'" in unknown.stderr
    database.dispose()
