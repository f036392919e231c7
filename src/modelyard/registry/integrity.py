"""Check that an artifact still holds the bytes the registry recorded, without rehashing it on every start.

A full sha256 of a multi-gigabyte GGUF takes seconds to minutes, so a successful check is remembered by
(path, size, mtime): a restart with an untouched file costs one ``stat``. Any write to the file changes its
mtime and forces a full rehash. A directory artifact (a Hugging Face model: config, safetensors, tokenizer) is
checked the same way against its content digest (``hashing.directory_digest``); its "mtime" is a fingerprint of
every file's name, size and mtime, so adding, removing, renaming or touching any file forces the rehash. The memo
lives in the local data directory because it describes this machine's copy of the file, not the registry's record.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.hashing import BytesProgress, directory_digest, directory_files, file_sha256


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
            size, mtime = _identity(path)
        except FileNotFoundError:
            raise ArtifactIntegrityError(f"artifact {path} is missing") from None
        if size != expected_size:
            raise ArtifactIntegrityError(
                f"artifact {path} is {size} bytes, the registry recorded {expected_size} bytes"
            )
        identity = {"path": str(path), "size": size, "mtime_ns": mtime, "sha256": expected_sha256}
        if self._memo(expected_sha256) == identity:
            return IntegrityResult(path, expected_sha256, from_cache=True)
        actual = directory_digest(path, progress)[0] if path.is_dir() else file_sha256(path, progress=progress)
        if actual != expected_sha256:
            self._forget(expected_sha256)
            raise ArtifactIntegrityError(
                f"artifact {path} has sha256 {actual}, the registry recorded {expected_sha256}: "
                "its files were modified or corrupted after registration"
            )
        self._remember(identity)
        return IntegrityResult(path, actual, from_cache=False)

    def known_sha256(self, path: Path) -> str | None:
        """The sha256 of ``path`` if this machine verified it and it has not changed since (no hashing)."""
        try:
            size, mtime = _identity(path)
            memos = list(self._memo_dir.glob("*.json"))
        except OSError:
            return None
        for memo_path in memos:
            memo = self._memo(memo_path.stem)
            if not memo:
                continue
            same_file = memo.get("path") == str(path) and memo.get("size") == size
            if same_file and memo.get("mtime_ns") == mtime:
                return str(memo["sha256"])
        return None

    def remember(self, path: Path, sha256: str) -> None:
        """Record a hash just computed elsewhere (at registration) so the first serve does not redo it."""
        size, mtime = _identity(path)
        self._remember({"path": str(path), "size": size, "mtime_ns": mtime, "sha256": sha256})

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


def _identity(path: Path) -> tuple[int, int | str]:
    """(size, mtime) of a file; for a directory, the total size of its files and a fingerprint of their names,
    sizes and mtimes (one ``stat`` per file, no reading)."""
    if not path.is_dir():
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    if not path.exists():
        raise FileNotFoundError(path)
    fingerprint = hashlib.sha256()
    total = 0
    for file in directory_files(path):
        stat = file.stat()
        total += stat.st_size
        fingerprint.update(f"{file.relative_to(path).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return total, fingerprint.hexdigest()
