"""A Hugging Face-format model directory as a registry artifact: what its files say, without loading it.

A directory version is ``format="hf"``; its ``sha256`` is the content digest of its files
(``hashing.directory_digest``: every file's relative path, size and sha256 in a stable order) and the per-file
hashes are kept in the version's header (``files``), so a changed file is named when the integrity check refuses
it. The facts come from ``config.json`` (architecture, dtype, context) and from the safetensors headers (parameter
count: the sum of the tensors' element counts, read from each file's JSON header, never its weights).
"""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path
from typing import Any

from modelyard.hashing import BytesProgress, directory_digest

HF_FORMAT = "hf"
REQUIRED_FILES = ("config.json",)
_MAX_SAFETENSORS_HEADER = 100 << 20


class HFDirectoryError(ValueError):
    """The directory is not a usable Hugging Face model (named file missing or unreadable)."""


def looks_like_hf_directory(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def read_config(path: Path) -> dict[str, Any]:
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise HFDirectoryError(f"{path} has no {name}: not a Hugging Face model directory.")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise HFDirectoryError(f"{path / 'config.json'} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise HFDirectoryError(f"{path / 'config.json'} is not a JSON object.")
    if not list(path.glob("*.safetensors")):
        raise HFDirectoryError(f"{path} has no *.safetensors weights.")
    return config


def safetensors_parameters(path: Path) -> int:
    """Total element count of the tensors in every ``*.safetensors`` file of ``path`` (headers only)."""
    total = 0
    for file in sorted(path.glob("*.safetensors")):
        with file.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                raise HFDirectoryError(f"{file} is too short to be a safetensors file.")
            (length,) = struct.unpack("<Q", raw)
            if length > _MAX_SAFETENSORS_HEADER:
                raise HFDirectoryError(f"{file} declares a {length}-byte header: not a safetensors file.")
            try:
                header = json.loads(handle.read(length))
            except ValueError:
                raise HFDirectoryError(f"{file} has an unreadable safetensors header.") from None
        for name, entry in header.items():
            if name != "__metadata__":
                total += prod(entry.get("shape", []))
    return total


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else config


def has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file():
        return True
    try:
        tokenizer_config = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(isinstance(tokenizer_config, dict) and tokenizer_config.get("chat_template"))


def describe_directory(path: Path, progress: BytesProgress | None = None) -> dict[str, Any]:
    """The registry facts of an HF directory: digest, size, dtype, architecture, parameters, context, header."""
    config = _text_config(read_config(path))
    digest, files = directory_digest(path, progress)
    architectures = config.get("architectures") or []
    model_type = str(config.get("model_type", ""))
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "")
    context = config.get("max_position_embeddings")
    return {
        "sha256": digest,
        "size_bytes": sum(int(entry["size"]) for entry in files.values()),
        "quantization": dtype,
        "architecture": model_type or (str(architectures[0]) if architectures else ""),
        "parameter_count": safetensors_parameters(path),
        "context_length": int(context) if isinstance(context, int) else None,
        "header": {
            "architectures": [str(a) for a in architectures],
            "model_type": model_type,
            "dtype": dtype,
            "has_chat_template": has_chat_template(path),
            "files": files,
        },
    }
