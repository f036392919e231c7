"""GGUF → Hugging Face-format directory, so a version llama.cpp serves can be served by vLLM with the same weights.

The work is done by ``vllm_tools/gguf_to_hf.py`` in the vLLM environment (torch, transformers, gguf), started as a
file so the gateway's environment needs none of them. The directory is written under a temporary name and renamed
only when complete, so a failed conversion never looks like a model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from modelyard.engines.vllm_install import VllmEnvironment

DTYPES = ("bfloat16", "float16", "float32")


class ConvertError(RuntimeError):
    pass


def tool(name: str) -> Path:
    """A script of ``engines/vllm_tools`` (run by the vLLM environment's interpreter)."""
    return Path(str(files("modelyard.engines").joinpath("vllm_tools", name)))


def gguf_to_hf(environment: VllmEnvironment, gguf: Path, output: Path, dtype: str = "bfloat16") -> dict[str, object]:
    """Write the dequantized HF directory of ``gguf`` at ``output``; returns what the tool reported."""
    if dtype not in DTYPES:
        raise ConvertError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    if output.exists():
        raise ConvertError(f"{output} already exists; choose another --output or remove it.")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    command = [str(environment.python), str(tool("gguf_to_hf.py")), str(gguf), str(partial), "--dtype", dtype]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise ConvertError(f"gguf_to_hf.py exited with {result.returncode}:\n{tail}")
        report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
        partial.rename(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    report["output"] = str(output)
    return report


def copy_directory(source: Path, destination: Path) -> Path:
    """A registry-owned copy of a converted directory (the cache may be cleared; a version's files must stay)."""
    if destination.exists():
        raise ConvertError(f"{destination} already exists; choose another --output or remove it.")
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        shutil.copytree(source, partial)
        partial.rename(destination)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return destination


def ensure_converted(
    environment: VllmEnvironment,
    gguf: Path,
    cache_root: Path,
    dtype: str = "bfloat16",
    log: Callable[[str], None] = print,
) -> Path:
    """The HF directory of ``gguf`` in the cache, converting it once (``models convert`` copies it from there, so
    converting the same GGUF again costs a copy). A marker names the GGUF it was made from (path, size, mtime),
    so a different GGUF at the same path is converted again."""
    stat = gguf.stat()
    source = {"gguf": str(gguf), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "dtype": dtype}
    target = cache_root / "models" / f"{gguf.stem}-hf-{dtype}"
    marker = target.with_name(target.name + ".source.json")
    try:
        if target.is_dir() and json.loads(marker.read_text()) == source:
            return target
    except (OSError, ValueError):
        pass
    shutil.rmtree(target, ignore_errors=True)
    log(f"Converting {gguf.name} to a Hugging Face directory ({dtype}) for vLLM ...")
    gguf_to_hf(environment, gguf, target, dtype)
    marker.write_text(json.dumps(source))
    return target
