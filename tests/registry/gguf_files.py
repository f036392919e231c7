"""Small but real GGUF files for registry tests, written with the ``gguf`` package's own writer."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def write_gguf(path: Path, seed: int = 1, name: str = "tiny", license: str = "apache-2.0") -> Path:
    """A GGUF with llama-style metadata, a 100-entry vocabulary (longer than the header reader keeps) and two
    tensors whose values depend on ``seed``, so different seeds give different bytes."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_license(license)
    writer.add_context_length(256)
    writer.add_block_count(1)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tags(["test", "tiny"])
    writer.add_token_list([f"tok{i}" for i in range(100)])
    writer.add_tensor("token_embd.weight", (np.arange(64 * 8, dtype=np.float32) * seed).reshape(64, 8))
    writer.add_tensor("output_norm.weight", np.full(8, seed, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_lora_gguf(path: Path, seed: int = 1, alpha: float = 16.0) -> Path:
    """A LoRA adapter GGUF as ``convert_lora_to_gguf.py`` marks one: ``general.type = adapter``,
    ``adapter.type = lora`` and ``adapter.lora.alpha``, with A/B tensors."""
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.full((8, 4), seed, dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.full((4, 8), seed, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
