"""Small, real Hugging Face-format directories for registry tests: a config.json, a safetensors file written by
the format's own layout (8-byte header length, JSON header, raw little-endian data) and a tokenizer config."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def write_safetensors(path: Path, tensors: dict[str, tuple[list[int], float]]) -> None:
    """Float32 tensors of the given shapes filled with one value each."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, (shape, value) in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        blob = struct.pack(f"<{count}f", *([value] * count))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def write_hf_dir(root: Path, seed: float = 1.0, chat_template: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "torch_dtype": "bfloat16",
        "max_position_embeddings": 32768,
    }
    (root / "config.json").write_text(json.dumps(config))
    write_safetensors(root / "model.safetensors", {"embed.weight": ([4, 3], seed), "norm.weight": ([3], seed)})
    tokenizer_config: dict[str, object] = {"bos_token": "<bos>"}
    if chat_template:
        tokenizer_config["chat_template"] = "{{ messages }}"
    (root / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (root / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    return root


def write_peft_dir(root: Path, seed: float = 1.0, rank: int = 8) -> Path:
    """A PEFT LoRA adapter directory as ``save_pretrained`` writes one."""
    root.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 16, "target_modules": ["v_proj", "q_proj"]}
    (root / "adapter_config.json").write_text(json.dumps(config))
    tensors = {"base_model.model.layers.0.self_attn.q_proj.lora_A.weight": ([rank, 4], seed)}
    write_safetensors(root / "adapter_model.safetensors", tensors)
    return root
