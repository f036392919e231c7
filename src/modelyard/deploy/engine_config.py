"""How a registry version becomes an engine command line: ``llama-server`` for a GGUF, ``vllm serve`` for a
Hugging Face-format directory."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from modelyard.deploy.capabilities import is_embedding_model
from modelyard.engines.llamacpp_server import LlamaServerConfig, builtin_chat_template
from modelyard.engines.settings import EngineSettings
from modelyard.engines.vllm_server import VllmLora, VllmServerConfig
from modelyard.engines.vllm_settings import VllmSettings
from modelyard.registry.adapters import adapter_rank
from modelyard.registry.hf_directory import HF_FORMAT
from modelyard.registry.records import VersionRecord

LLAMA_CPP = "llama.cpp"
VLLM = "vllm"

# Base models whose GGUF has no chat template get the turn template modelyard ships for their family.
_BUILTIN_TEMPLATES = {"gemma": "gemma"}


def engine_kind(version: VersionRecord) -> str:
    """The engine kind a version runs on: its artifact's format decides (vLLM reads HF directories)."""
    return VLLM if version.format == HF_FORMAT else LLAMA_CPP


def vllm_server_config(
    version: VersionRecord,
    settings: VllmSettings,
    adapters: tuple[VersionRecord, ...] = (),
    lora: bool = False,
) -> VllmServerConfig:
    """``lora``: launch with LoRA support (``adapters`` loaded at launch under their version keys, more later)."""
    template = None
    if not version.has_chat_template:
        family = next((f for f in _BUILTIN_TEMPLATES if version.architecture.startswith(f)), None)
        if family is not None:
            template = builtin_chat_template(f"{_BUILTIN_TEMPLATES[family]}-hf")
    return VllmServerConfig(
        model_dir=version.artifact_path,
        served_name=version.key,
        settings=settings,
        chat_template_file=template,
        pooling=is_embedding_model(version),
        context_length=version.context_length or None,
        lora=lora_support(adapters) if lora or adapters else None,
    )


def lora_support(adapters: tuple[VersionRecord, ...]) -> VllmLora:
    ranks = tuple(rank for rank in (adapter_rank(a) for a in adapters) if rank is not None)
    return VllmLora.fitting(tuple((a.key, a.artifact_path) for a in adapters), ranks)


def llama_server_config(
    version: VersionRecord, settings: EngineSettings, adapters: tuple[VersionRecord, ...] = ()
) -> LlamaServerConfig:
    """``adapters``: LoRA GGUFs loaded beside the model (request ``lora`` ids are their positions)."""
    template = None
    if not version.has_chat_template:
        family = next((f for f in _BUILTIN_TEMPLATES if version.architecture.startswith(f)), None)
        if family is not None:
            template = builtin_chat_template(_BUILTIN_TEMPLATES[family])
    config = LlamaServerConfig(
        model_path=version.artifact_path,
        alias=version.key,
        chat_template_file=template,
        context_size=settings.context_size,
        parallel=settings.parallel,
        embeddings=settings.embeddings or is_embedding_model(version),
        lora_adapters=tuple(a.artifact_path for a in adapters),
    )
    # Without an explicit thread count the config keeps its own default (the CPU count).
    return dataclasses.replace(config, threads=settings.threads) if settings.threads else config


def engine_log_path(log_dir: Path, version: VersionRecord) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version.model)
    return log_dir / f"engine-{safe}-v{version.number}.log"
