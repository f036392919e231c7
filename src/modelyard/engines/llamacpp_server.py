"""How modelyard runs ``llama-server``: the flags that make it a good engine behind a gateway.

The gateway does auth, limits and routing, so the engine is bound to loopback on a private port with its web UI
off, metrics on (for the observability layer) and enough parallel slots for continuous batching.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

GGUF_MAGIC = b"GGUF"


class ModelFileError(ValueError):
    pass


def builtin_chat_template(name: str) -> Path:
    """Chat templates modelyard ships for base models whose GGUF has none."""
    path = Path(str(files("modelyard.engines").joinpath("templates", f"{name}.jinja")))
    if not path.is_file():
        raise ModelFileError(f"No built-in chat template named '{name}'")
    return path


def check_gguf(path: Path) -> None:
    """Fail before launching anything when the file cannot be a GGUF model."""
    if not path.is_file():
        raise ModelFileError(f"Model file not found: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF file (its first bytes are {magic!r}, expected b'GGUF')")


@dataclass(frozen=True)
class LlamaServerConfig:
    """Engine settings a user may want to change; the defaults suit a small CPU box."""

    model_path: Path
    alias: str
    chat_template_file: Path | None = None
    context_size: int = 16384
    parallel: int = 8
    threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    batch_size: int = 512
    embeddings: bool = False
    extra_args: tuple[str, ...] = ()
    # LoRA adapter GGUFs loaded beside the model, at scale 0 until a request's ``lora`` field applies one; a
    # request names them by their index in this tuple
    lora_adapters: tuple[Path, ...] = ()
    host: str = "127.0.0.1"  # loopback behind ``modelyard serve``; the Pod's interface for ``modelyard engine``

    def argv(self, binary: Path, port: int) -> list[str]:
        args = [
            str(binary),
            "--model",
            str(self.model_path),
            "--alias",
            self.alias,
            "--host",
            self.host,
            "--port",
            str(port),
            "--ctx-size",
            str(self.context_size),
            "--parallel",
            str(self.parallel),
            "--threads",
            str(self.threads),
            "--batch-size",
            str(self.batch_size),
            "--cont-batching",
            "--metrics",
            "--no-webui",
        ]
        if self.chat_template_file is not None:
            args += ["--jinja", "--chat-template-file", str(self.chat_template_file)]
        if self.embeddings:
            # Generative GGUFs declare no pooling; OpenAI embeddings need one vector per input.
            args += ["--embeddings", "--pooling", "mean"]
        if self.lora_adapters:
            # Loaded at scale 0: a request without a ``lora`` field gets the base (``--lora-init-without-apply``
            # alone leaves the default scale at 1 for requests in this llama.cpp). The gateway still states every
            # scale in every request: only a changed list makes llama-server drop a slot's cached prompt.
            args.append("--lora-init-without-apply")
            for adapter in self.lora_adapters:
                plain = ":" not in str(adapter) and "," not in str(adapter)
                args += ["--lora-scaled", f"{adapter}:0"] if plain else ["--lora", str(adapter)]
        return [*args, *self.extra_args]
