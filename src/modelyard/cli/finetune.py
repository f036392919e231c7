"""``modelyard models finetune``: train a LoRA adapter on a registered HF-format version and register it.

Two adapter versions come out of one training run, both of the adapter's own model (``--name``): the PEFT
directory (``lora-peft``, parent: the HF version, for vLLM) and its llama.cpp GGUF (``lora-gguf``, parent: the GGUF
the HF version was converted from, for llama.cpp). Their provenance records the dataset (file name and sha256),
the steps, rank, alpha, learning rate, target modules and the base's digest.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from modelyard import paths
from modelyard.cli.models import ActorOption, JsonOption, _actor, _err, _out, _registry
from modelyard.cli.progress import byte_progress
from modelyard.hashing import file_sha256
from modelyard.registry.adapters import FineTuning
from modelyard.registry.hf_directory import HF_FORMAT
from modelyard.registry.records import VersionRecord
from modelyard.registry.references import parse_ref
from modelyard.registry.registration import Declared, register_file
from modelyard.registry.store import RegistryStore


def finetune(
    ref: Annotated[str, typer.Argument(help="Base version in HF format (made by `models convert … --to hf`).")],
    dataset: Annotated[Path, typer.Option(help="JSONL: eval cases with 'prompt' and 'metadata.answer'.")],
    name: Annotated[str | None, typer.Option(help="Adapter model name (default: BASE-lora-DATASET).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 30,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank r.")] = 8,
    alpha: Annotated[float, typer.Option(help="LoRA alpha (scaling alpha/r).")] = 16.0,
    learning_rate: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 4e-3,
    target_modules: Annotated[str, typer.Option(help="Comma-separated module names.")] = "q_proj,k_proj,v_proj,o_proj",
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a LoRA adapter with peft on CPU (a few steps), convert it to GGUF with llama.cpp's script, and
    register both forms as adapter versions whose parents are the base versions they apply to."""
    from modelyard.engines.lora_finetune import FinetuneError, Recipe, ensure_adapter
    from modelyard.engines.vllm_install import VllmInstallError, ensure_vllm

    if not dataset.is_file():
        raise typer.BadParameter(f"no file at {dataset}", param_hint="--dataset")
    recipe = Recipe(steps, rank, alpha, learning_rate, target_modules=tuple(m for m in target_modules.split(",") if m))
    with _registry() as (store, checker):
        base = _hf_base(store, ref)
        gguf_parent = _gguf_parent(store, base)
        adapter_name = name or f"{base.model}-lora-{dataset.stem}"
        try:
            environment = ensure_vllm(paths.cache_dir(), log=_err().print)
            trained = ensure_adapter(
                environment, paths.cache_dir(), base.artifact_path, base.sha256, dataset, recipe, _err().print
            )
        except (FinetuneError, VllmInstallError) as exc:
            _err().print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        report = trained.report
        record = FineTuning(
            dataset=dataset.name,
            dataset_sha256=file_sha256(dataset),
            examples=int(str(report.get("examples", 0))),
            steps=steps,
            rank=rank,
            alpha=alpha,
            learning_rate=learning_rate,
            target_modules=recipe.target_modules,
            base=base.key,
            base_sha256=base.sha256,
            seconds=float(str(report["seconds"])) if "seconds" in report else None,
            final_loss=float(str(report["final_loss"])) if "final_loss" in report else None,
        )
        home = (
            paths.data_dir() / "models" / f"{adapter_name}-{base.model}-v{base.number}-{trained.peft_dir.parent.name}"
        )
        if home.exists():
            _err().print(f"[bold red]error:[/] {home} exists: this adapter was registered already.")
            raise typer.Exit(2)
        home.mkdir(parents=True)
        shutil.copytree(trained.peft_dir, home / "peft")
        shutil.copy2(trained.gguf, home / "adapter.gguf")
        registered = []
        for artifact, parent, engine in (
            (home / "peft", base, "vLLM"),
            (home / "adapter.gguf", gguf_parent, "llama.cpp"),
        ):
            if parent is None:
                continue
            declared = Declared(
                license=base.license,
                base_model=base.base_model,
                parent=parse_ref(parent.key),
                lineage_notes=f"LoRA adapter for {engine}, trained with peft on {base.key}"
                + (" (converted with llama.cpp's convert_lora_to_gguf.py)" if engine == "llama.cpp" else ""),
                description=f"LoRA adapters of {base.model} trained on {dataset.name}",
                fine_tuning=record,
            )
            with byte_progress(f"sha256 {artifact.name}", _err()) as progress:
                registered.append(
                    register_file(store, checker, artifact, adapter_name, declared, _actor(actor), progress)
                )
    _report(registered, report, trained.cached, as_json)


def _hf_base(store: RegistryStore, ref: str) -> VersionRecord:
    """The HF-format version to train on: ``ref`` itself, or the HF version converted from the GGUF ``ref``."""
    version = store.resolve(parse_ref(ref))
    if version.format == HF_FORMAT:
        return version
    children = [v for v in store.get_model(version.model).active_versions() if v.parent == version.key]
    converted = next((v for v in children if v.format == HF_FORMAT), None)
    if converted is None:
        raise typer.BadParameter(
            f"{version.key} is {version.format}; training needs its HF form: modelyard models convert {version.key} "
            "--to hf",
            param_hint="REF",
        )
    return converted


def _gguf_parent(store: RegistryStore, base: VersionRecord) -> VersionRecord | None:
    """The GGUF the HF base was converted from (same weights): the parent of the adapter's GGUF form."""
    if base.parent is None:
        return None
    parent = store.resolve(parse_ref(base.parent))
    return parent if parent.format == "gguf" else None


def _report(registered: list[VersionRecord], report: dict[str, object], cached: bool, as_json: bool) -> None:
    if as_json:
        data = {"versions": [v.to_json() for v in registered], "training": report, "cached": cached}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    how = "from the cache" if cached else f"in {report.get('seconds')} s"
    _out().print(f"Trained ({how}): loss {report.get('first_loss')} → {report.get('final_loss')}")
    for version in registered:
        _out().print(f"Registered [bold]{version.key}[/] ({version.format}) on {version.parent}")
