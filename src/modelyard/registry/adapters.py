"""LoRA adapters as registry versions: what makes a version an adapter, what it records, and where it may be served.

An adapter is a version of its own (usually of a model of its own, ``gemma-3-270m-qa``) whose ``parent`` is the
base version it was trained on. It cannot answer anything alone: it is served on an engine of its parent, which
loads it beside the base weights (``--lora`` for llama.cpp, ``--enable-lora`` for vLLM). Two artifact formats:

- ``lora-gguf``: llama.cpp's LoRA GGUF (``general.type = adapter``, written by ``convert_lora_to_gguf.py``), for
  a GGUF base served by llama.cpp;
- ``lora-peft``: a PEFT adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``), for a
  Hugging Face-format base served by vLLM.

The fine-tuning that made it (dataset file and sha256, steps, rank, alpha, learning rate, target modules, the base
version and its digest) is kept in the version's header under ``fine_tuning`` and summarised in
``fine_tuning_data``. The rules here are pure: registration and the deployments' resolution ask them and refuse
with their message.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.hashing import BytesProgress, directory_digest

if TYPE_CHECKING:
    from modelyard.registry.records import VersionRecord

LORA_GGUF = "lora-gguf"
LORA_PEFT = "lora-peft"
#: adapter format → the format of the base it applies to
BASE_FORMAT = {LORA_GGUF: "gguf", LORA_PEFT: "hf"}
PEFT_CONFIG = "adapter_config.json"


class AdapterError(ValueError):
    """A directory that is not a usable PEFT adapter (named file missing or unreadable)."""


@dataclass(frozen=True)
class FineTuning:
    """How an adapter was made: enough to reproduce it and to know what it was taught."""

    dataset: str  # file name of the training data
    dataset_sha256: str
    examples: int
    steps: int
    rank: int
    alpha: float
    learning_rate: float
    target_modules: tuple[str, ...]
    base: str  # the version key trained on (the HF directory; the GGUF adapter's parent is its GGUF twin)
    base_sha256: str
    seconds: float | None = None  # wall time of the training steps
    final_loss: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FineTuning:
        return cls(**{**data, "target_modules": tuple(data.get("target_modules", ()))})

    def references(self) -> tuple[str, ...]:
        """The ``fine_tuning_data`` entries: the dataset named with its digest, then the recipe."""
        return (
            f"{self.dataset} (sha256 {self.dataset_sha256}, {self.examples} examples)",
            f"LoRA r={self.rank} alpha={self.alpha:g} lr={self.learning_rate:g} steps={self.steps} "
            f"modules={','.join(self.target_modules)} on {self.base} (sha256 {self.base_sha256})",
        )


def is_adapter_format(artifact_format: str) -> bool:
    return artifact_format in BASE_FORMAT


def is_adapter(version: VersionRecord) -> bool:
    return is_adapter_format(version.format)


def fine_tuning_of(version: VersionRecord) -> FineTuning | None:
    recorded = version.header.get("fine_tuning")
    return FineTuning.from_json(recorded) if isinstance(recorded, dict) else None


def adapter_rank(version: VersionRecord) -> int | None:
    """The LoRA rank (vLLM's ``--max-lora-rank`` must reach it): from the PEFT config or the recorded training."""
    rank = version.header.get("lora", {}).get("rank")
    if isinstance(rank, int):
        return rank
    recorded = fine_tuning_of(version)
    return recorded.rank if recorded is not None else None


def looks_like_peft_directory(path: Path) -> bool:
    return path.is_dir() and (path / PEFT_CONFIG).is_file()


def describe_peft_directory(path: Path, progress: BytesProgress | None = None) -> dict[str, Any]:
    """The registry facts of a PEFT adapter directory (its config; a content digest over its files)."""
    try:
        config = json.loads((path / PEFT_CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{path / PEFT_CONFIG} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterError(f"{path / PEFT_CONFIG} does not describe a LoRA adapter (peft_type LORA).")
    if not list(path.glob("adapter_model.*")):
        raise AdapterError(f"{path} has no adapter_model.safetensors weights.")
    digest, files = directory_digest(path, progress)
    modules = config.get("target_modules") or []
    return {
        "sha256": digest,
        "size_bytes": sum(int(entry["size"]) for entry in files.values()),
        "quantization": "",
        "architecture": "lora",
        "header": {
            "lora": {
                "rank": int(config.get("r", 0)),
                "alpha": config.get("lora_alpha"),
                "target_modules": sorted(modules) if isinstance(modules, list) else [str(modules)],
                "base_model_name_or_path": config.get("base_model_name_or_path"),
            },
            "files": files,
        },
    }


def lora_gguf_facts(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The adapter facts of a GGUF header, or None when the GGUF is a model, not an adapter."""
    if metadata.get("general.type") != "adapter":
        return None
    return {"type": metadata.get("adapter.type"), "alpha": metadata.get("adapter.lora.alpha")}


def registration_problem(artifact_format: str, parent: VersionRecord | None) -> str | None:
    """Why an artifact cannot be registered with this parent, or None. An adapter needs its base as parent, in
    the format it applies to; nothing may name an adapter as the base it was derived from by weights."""
    if not is_adapter_format(artifact_format):
        return None
    if parent is None:
        return (
            f"A LoRA adapter ({artifact_format}) must name the base version it was trained on: --parent NAME:VERSION."
        )
    if is_adapter(parent):
        return f"{parent.key} is itself a LoRA adapter; an adapter's parent is the base model version it applies to."
    wanted = BASE_FORMAT[artifact_format]
    if parent.format != wanted:
        return (
            f"A {artifact_format} adapter applies to a {wanted} base, but {parent.key} is {parent.format}: "
            f"register the {LORA_GGUF if parent.format == 'gguf' else LORA_PEFT} form of the adapter on it."
        )
    return None


def standalone_reason(version: VersionRecord) -> str:
    """What a client (or a deployments file) is told when it asks for an adapter as a model on its own."""
    parent = version.parent or "its base version"
    return (
        f"{version.key} is a LoRA adapter of {parent}; it cannot be served on its own. Serve it on its base: a "
        f"deployments target with model: {parent} and adapter: {version.key}."
    )


def serving_problem(base: VersionRecord, adapter: VersionRecord, scale: float, engine_kind: str) -> str | None:
    """Why ``adapter`` cannot be served on ``base`` (a deployments target), or None."""
    if not is_adapter(adapter):
        return f"{adapter.key} is not a LoRA adapter (format {adapter.format}); name it as the target's model."
    if adapter.parent != base.key:
        return (
            f"{adapter.key} is a LoRA adapter of {adapter.parent}, not of {base.key}: an adapter is served only on "
            "the base it was trained on."
        )
    problem = registration_problem(adapter.format, base)
    if problem is not None:
        return problem
    if engine_kind == "vllm" and scale != 1.0:
        return "vLLM applies an adapter at its trained scale only; adapter_scale must be 1.0 on a vLLM base."
    return None
