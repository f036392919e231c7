"""How a registry version becomes a ``llama-server`` command line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from modelyard.deploy.capabilities import is_embedding_model
from modelyard.engines.llamacpp_server import LlamaServerConfig, builtin_chat_template
from modelyard.engines.settings import EngineSettings
from modelyard.registry.records import VersionRecord

# Base models whose GGUF has no chat template get the turn template modelyard ships for their family.
_BUILTIN_TEMPLATES = {"gemma": "gemma"}


def llama_server_config(version: VersionRecord, settings: EngineSettings) -> LlamaServerConfig:
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
    )
    # Without an explicit thread count the config keeps its own default (the CPU count).
    return dataclasses.replace(config, threads=settings.threads) if settings.threads else config


def engine_log_path(log_dir: Path, version: VersionRecord) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version.model)
    return log_dir / f"engine-{safe}-v{version.number}.log"
