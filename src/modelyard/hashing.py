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


def directory_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, in a stable order (POSIX relative paths, sorted), dot-files skipped:
    the set of files a directory artifact (a Hugging Face model) consists of."""
    found = [
        path
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def directory_digest(root: Path, progress: BytesProgress | None = None) -> tuple[str, dict[str, dict[str, int | str]]]:
    """The content digest of a directory artifact and the sha256 and size of each of its files.

    The digest is the sha256 of one line per file, ``<relative path>\\t<size>\\t<sha256>\\n``, in the order of
    :func:`directory_files`, so renaming, adding, removing or editing any file changes it while the order the
    file system lists them in does not.
    """
    paths = directory_files(root)
    total = sum(path.stat().st_size for path in paths)
    done = 0
    manifest: dict[str, dict[str, int | str]] = {}
    for path in paths:
        size = path.stat().st_size

        def step(file_done: int, _file_total: int, base: int = done) -> None:
            if progress is not None:
                progress(base + file_done, total)

        manifest[path.relative_to(root).as_posix()] = {"size": size, "sha256": file_sha256(path, progress=step)}
        done += size
    return manifest_digest(manifest), manifest


def manifest_digest(manifest: dict[str, dict[str, int | str]]) -> str:
    lines = "".join(f"{name}\t{entry['size']}\t{entry['sha256']}\n" for name, entry in sorted(manifest.items()))
    return hashlib.sha256(lines.encode()).hexdigest()
