"""Content hashing shared by engine builds and model artifacts."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

BytesProgress = Callable[[int, int], None]  # (bytes done, bytes total)


def file_sha256(path: Path, chunk: int = 1 << 20, progress: BytesProgress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size if progress is not None else 0
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            if progress is not None:
                done += len(block)
                progress(done, total)
    return digest.hexdigest()
