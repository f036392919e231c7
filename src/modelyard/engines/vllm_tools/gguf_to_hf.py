"""Dequantize a GGUF into a Hugging Face-format directory (config.json, safetensors, tokenizer), offline.

Run by the vLLM environment's Python: ``python gguf_to_hf.py MODEL.gguf OUTPUT_DIR --dtype bfloat16``.
transformers reads the GGUF's metadata into a config, its tokenizer into a fast tokenizer and dequantizes every
tensor; the result is written with ``save_pretrained`` (safetensors). Nothing is downloaded. Prints one JSON line
with what it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _adds_bos(path: Path) -> bool:
    import gguf

    field = gguf.GGUFReader(path).fields.get("tokenizer.ggml.add_bos_token")
    return bool(field.parts[-1][0]) if field is not None else False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(args.gguf.parent), args.gguf.name
    # The GGUF says whether its tokenizer starts a text with BOS (llama.cpp does so); the HF tokenizer must too.
    # B615: `folder` is a local directory (the registered GGUF's), never a hub name: nothing is downloaded.
    tokenizer = AutoTokenizer.from_pretrained(  # nosec B615
        folder, gguf_file=name, add_bos_token=_adds_bos(args.gguf)
    )
    # dequantize: dense weights (transformers otherwise keeps GGUF blocks packed, which cannot be saved).
    model = AutoModelForCausalLM.from_pretrained(  # nosec B615 (a local directory, as above)
        folder,
        gguf_file=name,
        dtype=getattr(torch, args.dtype),
        quantization_config=GgufConfig(gguf_file=name, dequantize=True),
    )
    # The result is a plain dense model: no quantization config may follow it into config.json.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    args.output.mkdir(parents=True, exist_ok=False)
    # A chat turn ends with the template's end-of-turn token, which llama.cpp stops at by itself (the GGUF marks
    # it end-of-generation); vLLM stops at the generation config's eos ids, so it is listed there too.
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        eos = model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        model.generation_config.eos_token_id = [*eos_ids, end_of_turn] if end_of_turn not in eos_ids else eos_ids
    model.save_pretrained(args.output, safe_serialization=True)
    tokenizer.save_pretrained(args.output)
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"output": str(args.output), "architecture": model.config.model_type, "parameters": parameters}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
