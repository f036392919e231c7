"""Derive a new version by re-quantizing an existing one with llama.cpp's ``llama-quantize``.

Re-quantizing an already-quantized GGUF loses more quality than quantizing from F16, which is exactly why it is
useful here: a deliberately lower-quality variant to exercise promotion, evaluation and rollback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

QUANT_TYPES = (
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q4_0",
    "Q4_1",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_0",
    "Q5_1",
    "Q5_K_S",
    "Q5_K_M",
    "Q6_K",
    "Q8_0",
    "IQ4_NL",
    "IQ4_XS",
)


class QuantizeError(RuntimeError):
    pass


def requantize(quantize_binary: Path, source: Path, output: Path, quant_type: str, threads: int | None = None) -> Path:
    """Write ``output`` atomically (temp file, then rename), so a failed run leaves nothing behind."""
    if quant_type not in QUANT_TYPES:
        raise QuantizeError(f"Unknown quantization type {quant_type!r}; choose one of {', '.join(QUANT_TYPES)}.")
    if output.exists():
        raise QuantizeError(f"{output} already exists; choose another --output or remove it.")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + f".partial-{os.getpid()}")
    argv = [str(quantize_binary), "--allow-requantize", str(source), str(partial), quant_type]
    if threads:
        argv.append(str(threads))
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
            raise QuantizeError(f"llama-quantize exited with {result.returncode}:\n{tail}")
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output
