"""Check that an artifact still holds the bytes the registry recorded, without rehashing it on every start.

A full sha256 of a multi-gigabyte GGUF takes seconds to minutes, so a successful check is remembered by
(path, size, mtime): a restart with an untouched file costs one ``stat``. Any write to the file changes its
mtime and forces a full rehash. The memo lives in the local data directory because it describes this
machine's copy of the file, not the registry's record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.hashing import BytesProgress, file_sha256


class ArtifactIntegrityError(RuntimeError):
    """The artifact is missing or its bytes differ from the registered ones; the version must not be served."""


@dataclass(frozen=True)
class IntegrityResult:
    path: Path
    sha256: str
    from_cache: bool


class IntegrityChecker:
    def __init__(self, memo_dir: Path) -> None:
        self._memo_dir = memo_dir

    def verify(
        self, path: Path, expected_sha256: str, expected_size: int, progress: BytesProgress | None = None
    ) -> IntegrityResult:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"artifact {path} is missing") from None
        if stat.st_size != expected_size:
            raise ArtifactIntegrityError(
                f"artifact {path} is {stat.st_size} bytes, the registry recorded {expected_size} bytes"
            )
        identity = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": expected_sha256}
        if self._memo(expected_sha256) == identity:
            return IntegrityResult(path, expected_sha256, from_cache=True)
        actual = file_sha256(path, progress=progress)
        if actual != expected_sha256:
            self._forget(expected_sha256)
            raise ArtifactIntegrityError(
                f"artifact {path} has sha256 {actual}, the registry recorded {expected_sha256}: "
                "the file was modified or corrupted after registration"
            )
        self._remember(identity)
        return IntegrityResult(path, actual, from_cache=False)

    def known_sha256(self, path: Path) -> str | None:
        """The sha256 of ``path`` if this machine verified it and it has not changed since (no hashing)."""
        try:
            stat = path.stat()
            memos = list(self._memo_dir.glob("*.json"))
        except OSError:
            return None
        for memo_path in memos:
            memo = self._memo(memo_path.stem)
            if not memo:
                continue
            same_file = memo.get("path") == str(path) and memo.get("size") == stat.st_size
            if same_file and memo.get("mtime_ns") == stat.st_mtime_ns:
                return str(memo["sha256"])
        return None

    def remember(self, path: Path, sha256: str) -> None:
        """Record a hash just computed elsewhere (at registration) so the first serve does not redo it."""
        stat = path.stat()
        self._remember({"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256})

    def _memo_path(self, sha256: str) -> Path:
        return self._memo_dir / f"{sha256}.json"

    def _memo(self, sha256: str) -> dict[str, object] | None:
        try:
            return json.loads(self._memo_path(sha256).read_text())
        except (OSError, ValueError):
            return None

    def _remember(self, identity: dict[str, object]) -> None:
        self._memo_dir.mkdir(parents=True, exist_ok=True)
        target = self._memo_path(str(identity["sha256"]))
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(identity))
        tmp.replace(target)

    def _forget(self, sha256: str) -> None:
        self._memo_path(sha256).unlink(missing_ok=True)
