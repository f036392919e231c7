"""Train a LoRA adapter with ``peft`` on CPU: a few steps over a small JSONL dataset, offline.

Run by the vLLM environment's Python (torch, transformers, peft):
``python train_lora.py BASE_DIR DATASET.jsonl OUTPUT_DIR --steps 30 --rank 8 --alpha 16 --lr 4e-3``.

Each dataset line is an eval case (``examples/adapters/quorvath.jsonl``): the model learns to continue ``prompt``
with ``metadata.answer`` (the loss covers the answer's tokens and an end-of-sequence token, not the prompt's), so
the same file is the training data and the eval suite that shows what the adapter learnt. Batches are drawn in a
seeded order; the adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``) is what PEFT's
``save_pretrained`` writes. Prints one JSON line with the final loss and the time taken.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path


def _examples(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        case = json.loads(line)
        answer = (case.get("metadata") or {}).get("answer")
        if case.get("prompt") and answer:
            pairs.append((case["prompt"], answer))
    if not pairs:
        raise SystemExit(f"{path}: no line has both 'prompt' and 'metadata.answer'")
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    rng = random.Random(args.seed)
    # B615: a local directory (the registered HF version's), never a hub name: nothing is downloaded.
    tokenizer = AutoTokenizer.from_pretrained(str(args.base))  # nosec B615
    model = AutoModelForCausalLM.from_pretrained(str(args.base), dtype=torch.float32)  # nosec B615
    modules = [m for m in args.target_modules.split(",") if m]
    config = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=modules)
    model = get_peft_model(model, config)
    model.train()

    rows = []
    for prompt, answer in _examples(args.dataset):
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (prompt_ids + answer_ids)[: args.max_length]
        labels = ([-100] * len(prompt_ids) + answer_ids)[: args.max_length]
        rows.append((ids, labels))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def batch(indices: list[int]) -> dict[str, torch.Tensor]:
        width = max(len(rows[i][0]) for i in indices)
        ids = [rows[i][0] + [pad] * (width - len(rows[i][0])) for i in indices]
        labels = [rows[i][1] + [-100] * (width - len(rows[i][1])) for i in indices]
        mask = [[1] * len(rows[i][0]) + [0] * (width - len(rows[i][0])) for i in indices]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}

    causal = model.get_base_model()
    softcap = getattr(causal.config, "final_logit_softcapping", None)

    def answer_loss(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the answer tokens only. The output projection (262k rows for Gemma 3) runs on the
        positions that predict an answer token, not on every position: most of a step's work otherwise."""
        hidden = causal.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        targets = inputs["labels"][:, 1:]
        keep = targets != -100
        logits = causal.lm_head(hidden[:, :-1][keep])
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep])

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    order: list[int] = []
    losses = []
    started = time.monotonic()
    for _step in range(args.steps):
        if len(order) < args.batch:
            order += rng.sample(range(len(rows)), len(rows))
        chosen, order = order[: args.batch], order[args.batch :]
        loss = answer_loss(batch(chosen))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
        if (_step + 1) % 5 == 0 or _step == 0:
            print(f"step {_step + 1}/{args.steps} loss {losses[-1]:.4f}", file=sys.stderr, flush=True)
    seconds = time.monotonic() - started
    args.output.mkdir(parents=True, exist_ok=False)
    model.save_pretrained(str(args.output), safe_serialization=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report = {
        "output": str(args.output),
        "examples": len(rows),
        "steps": args.steps,
        "seconds": round(seconds, 1),
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 4),
        "trainable_parameters": trainable,
        "target_modules": modules,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
