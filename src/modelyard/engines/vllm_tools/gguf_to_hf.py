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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("gguf", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(args.gguf.parent), args.gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, args.dtype))
    args.output.mkdir(parents=True, exist_ok=False)
    model.save_pretrained(args.output, safe_serialization=True)
    tokenizer.save_pretrained(args.output)
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"output": str(args.output), "architecture": model.config.model_type, "parameters": parameters}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
