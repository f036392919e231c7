"""Turn an artifact on disk into a registry version: a GGUF file (its header) or a Hugging Face-format directory
(its ``config.json`` and safetensors headers), hashed, plus what a person declares.

The header or config is read before the (slow) hash so that something that is neither is refused in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from modelyard.hashing import BytesProgress, file_sha256
from modelyard.registry.adapters import (
    LORA_GGUF,
    LORA_PEFT,
    AdapterError,
    FineTuning,
    describe_peft_directory,
    looks_like_peft_directory,
    lora_gguf_facts,
    registration_problem,
)
from modelyard.registry.errors import InvalidRequest
from modelyard.registry.gguf_header import GGUFHeaderError, read_gguf_header
from modelyard.registry.hf_directory import HF_FORMAT, HFDirectoryError, describe_directory
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.records import VersionRecord
from modelyard.registry.references import ModelRef
from modelyard.registry.store import NewVersion, RegistryStore


@dataclass(frozen=True)
class Declared:
    """Provenance a person states at registration; empty fields keep what the GGUF header says."""

    license: str = ""
    base_model: str = ""
    parent: ModelRef | None = None
    training_data: tuple[str, ...] = ()
    fine_tuning_data: tuple[str, ...] = ()
    lineage_notes: str = ""
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] | None = field(default=None)
    alias: str | None = None
    fine_tuning: FineTuning | None = None  # how a LoRA adapter was trained (kept in its header, summarised)


def describe_artifact(path: Path, model: str, progress: BytesProgress | None = None) -> NewVersion:
    """Measure a GGUF (header facts, size, sha256) or an HF directory (config facts, total size, content digest).
    Declared provenance is added by the caller."""
    path = path.expanduser().absolute()
    if not path.exists():
        raise InvalidRequest(f"No file at {path}.", param="path")
    if looks_like_peft_directory(path):
        try:
            facts = describe_peft_directory(path, progress)
        except AdapterError as exc:
            raise InvalidRequest(str(exc), param="path") from None
        return NewVersion(model=model, artifact_path=path, format=LORA_PEFT, **facts)
    if path.is_dir():
        try:
            facts = describe_directory(path, progress)
        except HFDirectoryError as exc:
            raise InvalidRequest(str(exc), param="path") from None
        return NewVersion(model=model, artifact_path=path, format=HF_FORMAT, **facts)
    if not path.is_file():
        raise InvalidRequest(f"{path} is not a regular file or a model directory.", param="path")
    try:
        header = read_gguf_header(path)
    except GGUFHeaderError as exc:
        raise InvalidRequest(str(exc), param="path") from None
    size = path.stat().st_size
    sha256 = file_sha256(path, progress=progress)
    base_models = header.base_models()
    adapter = lora_gguf_facts(header.metadata)
    summary = header.summary() if adapter is None else {**header.summary(), "adapter": adapter}
    return NewVersion(
        model=model,
        artifact_path=path,
        sha256=sha256,
        size_bytes=size,
        format="gguf" if adapter is None else LORA_GGUF,
        quantization=header.quantization,
        architecture=header.architecture,
        parameter_count=header.parameter_count,
        context_length=header.context_length,
        header=summary,
        license=header.license,
        base_model=base_models[0] if base_models else "",
    )


def register_file(
    store: RegistryStore,
    checker: IntegrityChecker,
    path: Path,
    model: str,
    declared: Declared,
    actor: str,
    progress: BytesProgress | None = None,
) -> VersionRecord:
    """Register ``path`` as the next version of ``model``; a person's declaration beats a header tag. A LoRA
    adapter is refused unless its parent is a base version of the format it applies to."""
    measured = _merge(describe_artifact(path, model, progress), declared)
    parent = store.resolve(measured.parent) if measured.parent is not None else None
    problem = registration_problem(measured.format, parent)
    if problem is not None:
        raise InvalidRequest(problem, param="parent")
    version = store.register(measured, actor)
    checker.remember(measured.artifact_path, measured.sha256)  # the first serve need not rehash
    return version


def _merge(measured: NewVersion, declared: Declared) -> NewVersion:
    declared_values = {f.name: getattr(declared, f.name) for f in fields(declared) if f.name != "fine_tuning"}
    overrides = {name: value for name, value in declared_values.items() if value not in (None, "", ())}
    merged = replace(measured, **overrides)
    if declared.fine_tuning is None:
        return merged
    return replace(
        merged,
        header={**merged.header, "fine_tuning": declared.fine_tuning.to_json()},
        fine_tuning_data=(*merged.fine_tuning_data, *declared.fine_tuning.references()),
    )
