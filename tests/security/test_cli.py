"""``modelyard keys …`` and ``modelyard audit …`` against a real SQLite store (no engine)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELYARD_DATA_DIR": str(data_dir), "MODELYARD_ACTOR": "alice@ci"}
    env.pop("MODELYARD_DATABASE_URL", None)
    env.pop("MODELYARD_KEY_PEPPER", None)
    return subprocess.run([sys.executable, "-m", "modelyard", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_keys_lifecycle_and_audit_from_the_cli(tmp_path: Path) -> None:
    created = _cli(tmp_path, "keys", "create", "team-a", "--scope", "inference", "--scope", "read", "--rpm", "5",
                   "--model", "gemma-*", "--token-budget", "1000", "--expires-in", "30d", "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("my-") and key["limits"]["rpm"] == 5 and key["status"] == "active"
    assert (tmp_path / "key-pepper").stat().st_mode & 0o777 == 0o600
    listed = _cli(tmp_path, "keys", "list", "--json")
    assert listed.returncode == 0 and key["key"] not in listed.stdout
    assert [k["id"] for k in json.loads(listed.stdout)] == [key["id"]]
    table = _cli(tmp_path, "keys", "list")
    assert "team-a" in table.stdout and key["prefix"] in table.stdout
    assert _cli(tmp_path, "keys", "expire", key["id"], "--in", "1h").returncode == 0
    revoked = _cli(tmp_path, "keys", "revoke", key["id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert _cli(tmp_path, "keys", "list", "--json").stdout.strip() == "[]"
    assert json.loads(_cli(tmp_path, "keys", "list", "--all", "--json").stdout)[0]["status"] == "revoked"
    missing = _cli(tmp_path, "keys", "revoke", "key_nope")
    assert missing.returncode == 2 and "no API key" in missing.stderr
    assert _cli(tmp_path, "keys", "spend").returncode == 0
    history = json.loads(_cli(tmp_path, "audit", "list", "--json").stdout)
    assert [r["action"] for r in history] == ["key.revoke", "key.expire", "key.create"]
    assert {r["actor"] for r in history} == {"alice@ci"}
    ok = _cli(tmp_path, "audit", "verify")
    assert ok.returncode == 0 and "audit log OK: 3 records" in ok.stdout
    with sqlite3.connect(tmp_path / "modelyard.db") as db:
        db.execute("UPDATE audit_log SET after = '{}' WHERE id = 2")
    broken = _cli(tmp_path, "audit", "verify")
    assert broken.returncode == 1 and "record 2 was edited" in broken.stdout
