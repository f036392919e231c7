"""``modelyard models …``: the registry from the command line.

The CLI talks to the registry database directly (``MODELYARD_DATABASE_URL``, or the SQLite file in the data
directory), like a migration tool would; running gateways pick up alias moves within their poll interval.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelyard import paths
from modelyard.cli.progress import byte_progress
from modelyard.cli.registry_views import (
    evaluations_table,
    events_table,
    models_table,
    version_table,
    versions_table,
)
from modelyard.evals.storage import EvalStore, version_evaluations
from modelyard.registry.card import model_card, render_markdown
from modelyard.registry.errors import PromotionGateFailed, RegistryError
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.quantize import QuantizeError, requantize
from modelyard.registry.references import PRODUCTION, parse_ref, parse_version_number
from modelyard.registry.registration import Declared, register_file
from modelyard.registry.store import ModelDetails, RegistryStore
from modelyard.roles.stores import open_registry
from modelyard.store.database import StoreUnavailable

models_app = typer.Typer(no_args_is_help=True, help="The model registry: versions, aliases, promotion, cards.")

ActorOption = Annotated[
    str | None, typer.Option("--actor", envvar="MODELYARD_ACTOR", help="Who is acting (default: user@host).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _actor(explicit: str | None) -> str:
    return explicit or f"{getpass.getuser()}@{socket.gethostname()}"


def _out() -> Console:
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 160  # pipes and CI logs: wide tables rather than folded cells
    return console


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def _registry() -> Iterator[tuple[RegistryStore, IntegrityChecker]]:
    """Open the registry and turn its failures into one clear line and a distinct exit code."""
    try:
        store, checker = open_registry()
        try:
            yield store, checker
        finally:
            store.database.dispose()
    except PromotionGateFailed as exc:
        _err().print(f"[bold red]refused:[/] {exc.message}", highlight=False)
        for gate in exc.gates:
            _err().print(f"  ✗ {gate['gate']} ({gate['type']}): {gate['message']}", highlight=False)
        raise typer.Exit(4) from None
    except RegistryError as exc:
        _err().print(f"[bold red]error:[/] {exc.message}")
        raise typer.Exit(2) from None
    except (StoreUnavailable, QuantizeError) as exc:
        _err().print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(3 if isinstance(exc, StoreUnavailable) else 2) from None


def _parse_tags(tags: list[str]) -> dict[str, str] | None:
    if not tags:
        return None
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"tags are KEY=VALUE, got {tag!r}", param_hint="--tag")
        parsed[key] = value
    return parsed


@models_app.command("register")
def register(
    path: Annotated[Path, typer.Argument(help="A local GGUF file.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Registered model name (new or existing).")],
    description: Annotated[str | None, typer.Option(help="What the model is for.")] = None,
    owner: Annotated[str | None, typer.Option(help="Team or person responsible.")] = None,
    tag: Annotated[list[str], typer.Option("--tag", help="KEY=VALUE, repeatable.")] = [],  # noqa: B006
    license: Annotated[str, typer.Option(help="License (default: from the GGUF header).")] = "",
    base_model: Annotated[str, typer.Option(help="Base model it derives from.")] = "",
    parent: Annotated[str | None, typer.Option(help="Parent version, e.g. gemma-3-270m:1.")] = None,
    training_data: Annotated[list[str], typer.Option(help="Training data reference, repeatable.")] = [],  # noqa: B006
    fine_tuning_data: Annotated[list[str], typer.Option(help="Fine-tuning data reference, repeatable.")] = [],  # noqa: B006
    notes: Annotated[str, typer.Option(help="Free-form lineage notes.")] = "",
    alias: Annotated[str | None, typer.Option(help="Also point this alias at the new version.")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a GGUF file as the next version of a model (its first version becomes 'production')."""
    with _registry() as (store, checker):
        declared = Declared(
            license=license,
            base_model=base_model,
            parent=parse_ref(parent) if parent else None,
            training_data=tuple(training_data),
            fine_tuning_data=tuple(fine_tuning_data),
            lineage_notes=notes,
            description=description,
            owner=owner,
            tags=_parse_tags(tag),
            alias=alias,
        )
        with byte_progress(f"sha256 {path.name}", _err()) as progress:
            version = register_file(store, checker, path, name, declared, _actor(actor), progress)
        if as_json:
            _print_json(version.to_json())
            return
        _out().print(f"Registered [bold]{version.key}[/] ({version.quantization}, sha256 {version.sha256[:12]}…)")
        _out().print(version_table(version))


@models_app.command("list")
def list_models(as_json: JsonOption = False) -> None:
    """List registered models with their production version and aliases."""
    with _registry() as (store, _):
        models = store.list_models()
        if as_json:
            _print_json([m.to_json() for m in models])
        elif not models:
            _out().print("No registered models yet. `modelyard models register FILE --name NAME` adds one.")
        else:
            _out().print(models_table(models))


@models_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    all_versions: Annotated[bool, typer.Option("--all", help="Include archived versions.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show a model (versions, aliases, history) or one version in full."""
    parsed = parse_ref(ref)
    with _registry() as (store, _):
        if parsed.version is None and parsed.alias is None:
            model = store.get_model(parsed.name)
            events = store.events(parsed.name, limit=20)
            if as_json:
                _print_json({**model.to_json(), "events": [e.to_json() for e in events]})
                return
            console = _out()
            if model.description:
                console.print(model.description)
            console.print(versions_table(model, all_versions))
            console.print(events_table(events, "Recent history"))
            return
        version = store.resolve(parsed)
        evaluations = version_evaluations(EvalStore(store.database), version.key)
        if as_json:
            _print_json({**version.to_json(), "evaluations": evaluations})
        else:
            _out().print(version_table(version))
            _out().print(evaluations_table(version.key, evaluations))


@models_app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Model name.")],
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    owner: Annotated[str | None, typer.Option(help="New owner.")] = None,
    tag: Annotated[list[str], typer.Option("--tag", help="KEY=VALUE to set, repeatable.")] = [],  # noqa: B006
    remove_tag: Annotated[list[str], typer.Option("--remove-tag", help="KEY to remove, repeatable.")] = [],  # noqa: B006
    actor: ActorOption = None,
) -> None:
    """Change a model's description, owner or tags (e.g. price_input_per_1k / price_output_per_1k for cost)."""
    with _registry() as (store, _):
        tags = None
        if tag or remove_tag:
            tags = {**store.get_model(name).tags, **(_parse_tags(tag) or {})}
            for key in remove_tag:
                tags.pop(key, None)
        model = store.update_model(name, ModelDetails(description, owner, tags), _actor(actor))
        shown = ", ".join(f"{k}={v}" for k, v in sorted(model.tags.items())) or "no tags"
        _out().print(f"{model.name}: owner {model.owner or '—'}; {shown}")


@models_app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. staging, canary, production.")],
    version: Annotated[str | None, typer.Argument(help="Version to point at (omit with --delete).")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    expect: Annotated[int | None, typer.Option(help="Only move if it points at this version now.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Move past failed promotion gates (recorded).")] = False,
    actor: ActorOption = None,
) -> None:
    """Point an alias at a version (or remove it). Gateways switch traffic once the version is ready."""
    with _registry() as (store, _):
        if delete:
            event = store.remove_alias(name, alias_name, _actor(actor))
            _out().print(f"{name}: {event.describe()}")
            return
        if version is None:
            raise typer.BadParameter("give a VERSION, or --delete", param_hint="VERSION")
        target = parse_ref(version) if (":" in version or "@" in version) else parse_version_number(version)
        move = store.move_alias(name, alias_name, target, _actor(actor), expected=expect, force=force)
        _out().print(f"{name}: alias '{alias_name}' {move.from_version or '(none)'} → {move.to_version}")
        _print_gate_outcome(store, name)


@models_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to promote.")],
    to: Annotated[str, typer.Option("--to", help="Alias to move.")] = PRODUCTION,
    expect: Annotated[int | None, typer.Option(help="Only promote if the alias points at this version now.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote past failed gates (recorded).")] = False,
    actor: ActorOption = None,
) -> None:
    """Make a version production (or move another alias with --to). Refused (exit 4) when a gate fails."""
    with _registry() as (store, _):
        move = store.move_alias(name, to, parse_version_number(version), _actor(actor), expected=expect, force=force)
        _out().print(f"{name}: '{to}' {move.from_version or '(none)'} → {move.to_version}")
        _print_gate_outcome(store, name)


def _print_gate_outcome(store: RegistryStore, name: str) -> None:
    """After a move: say which gates it passed, or that it was forced past which."""
    event = store.events(name, limit=1)[-1]
    if event.detail.get("forced"):
        _err().print("[bold yellow]forced[/] past failed gates (recorded in the history):", highlight=False)
        for gate in event.detail.get("failed_gates", []):
            _err().print(f"  ✗ {gate['gate']}: {gate['message']}", highlight=False)
    for gate in event.detail.get("gates", []) if not event.detail.get("forced") else []:
        _out().print(f"  ✓ {gate['gate']}: {gate['message']}", highlight=False)


@models_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Option("--alias", help="Alias to roll back.")] = PRODUCTION,
    actor: ActorOption = None,
) -> None:
    """Move an alias back to the version it pointed at before its last move."""
    with _registry() as (store, _):
        move = store.rollback(name, alias_name, _actor(actor))
        _out().print(f"{name}: '{alias_name}' rolled back {move.from_version} → {move.to_version}")


@models_app.command("archive")
def archive(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION")],
    actor: ActorOption = None,
) -> None:
    """Hide a version from serving and listings; its record and history are kept."""
    parsed = parse_ref(ref)
    if parsed.version is None:
        raise typer.BadParameter("name a version: NAME:VERSION", param_hint="REF")
    with _registry() as (store, _):
        version = store.archive(parsed.name, parsed.version, _actor(actor))
        _out().print(f"{version.key} archived")


@models_app.command("card")
def card(
    ref: Annotated[str, typer.Argument(help="NAME (production), NAME:VERSION or NAME@ALIAS.")],
    output_format: Annotated[str, typer.Option("--format", help="md or json.")] = "md",
    output: Annotated[Path | None, typer.Option(help="Write to a file instead of stdout.")] = None,
) -> None:
    """Print a model card: identity, provenance, license, quantization, history."""
    if output_format not in ("md", "json"):
        raise typer.BadParameter("use md or json", param_hint="--format")
    parsed = parse_ref(ref)
    with _registry() as (store, _):
        version = store.resolve(parsed)
        document = model_card(
            store.get_model(parsed.name),
            version,
            store.events(parsed.name, limit=1000),
            version_evaluations(EvalStore(store.database), version.key),
        )
    text = render_markdown(document) if output_format == "md" else json.dumps(document, indent=2) + "\n"
    if output is not None:
        output.write_text(text)
        _err().print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@models_app.command("quantize")
def quantize(
    ref: Annotated[str, typer.Argument(help="Source version: NAME, NAME:VERSION or NAME@ALIAS.")],
    quant_type: Annotated[str, typer.Option("--type", help="Target type, e.g. Q2_K, Q8_0.")],
    output: Annotated[Path | None, typer.Option(help="Where to write the GGUF (default: data dir).")] = None,
    name: Annotated[str | None, typer.Option(help="Register under this model (default: the source's).")] = None,
    alias_name: Annotated[str | None, typer.Option("--alias", help="Point this alias at the result.")] = None,
    actor: ActorOption = None,
) -> None:
    """Re-quantize a version with llama-quantize and register the result as a new version derived from it."""
    from modelyard.engines.llamacpp_build import ensure_engine

    parsed = parse_ref(ref)
    with _registry() as (store, checker):
        source = store.resolve(parsed)
        target_name = name or source.model
        destination = output or paths.data_dir() / "models" / f"{target_name}-v{source.number}-{quant_type}.gguf"
        binary = ensure_engine(paths.cache_dir(), log=_err().print).binary("llama-quantize")
        _err().print(f"Quantizing {source.key} ({source.quantization}) to {quant_type} …")
        requantize(binary, source.artifact_path, destination.absolute(), quant_type, threads=os.cpu_count())
        declared = Declared(
            license=source.license,
            base_model=source.base_model,
            parent=parse_ref(source.key),
            training_data=source.training_data,
            fine_tuning_data=source.fine_tuning_data,
            lineage_notes=f"Re-quantized from {source.key} (sha256 {source.sha256}) to {quant_type} with "
            "llama-quantize --allow-requantize.",
            alias=alias_name,
        )
        with byte_progress(f"sha256 {destination.name}", _err()) as progress:
            version = register_file(store, checker, destination, target_name, declared, _actor(actor), progress)
        _out().print(f"Registered [bold]{version.key}[/] ({version.quantization}) from {source.key}: {destination}")


@models_app.command("convert")
def convert(
    ref: Annotated[str, typer.Argument(help="Source GGUF version: NAME, NAME:VERSION or NAME@ALIAS.")],
    to: Annotated[str, typer.Option("--to", help="Target format: hf (a Hugging Face directory vLLM serves).")],
    dtype: Annotated[
        str, typer.Option(help="Weight dtype of the directory: bfloat16, float16 or float32.")
    ] = "bfloat16",
    output: Annotated[Path | None, typer.Option(help="Where to write the directory (default: data dir).")] = None,
    alias_name: Annotated[str | None, typer.Option("--alias", help="Point this alias at the result.")] = None,
    actor: ActorOption = None,
) -> None:
    """Dequantize a GGUF version into an HF-format directory (weights + the GGUF's tokenizer; nothing is
    downloaded) and register it as a new version of the same model whose parent is the GGUF version."""
    from modelyard.engines.hf_convert import ConvertError, copy_directory, ensure_converted
    from modelyard.engines.vllm_install import VllmInstallError, ensure_vllm

    if to != "hf":
        raise typer.BadParameter("only --to hf is supported", param_hint="--to")
    parsed = parse_ref(ref)
    with _registry() as (store, checker):
        source = store.resolve(parsed)
        if source.format != "gguf":
            raise typer.BadParameter(f"{source.key} is {source.format}, not a GGUF", param_hint="REF")
        destination = (output or paths.data_dir() / "models" / f"{source.model}-v{source.number}-hf-{dtype}").absolute()
        try:
            environment = ensure_vllm(paths.cache_dir(), log=_err().print)
            _err().print(f"Dequantizing {source.key} ({source.quantization}) to an HF directory ({dtype}) …")
            converted = ensure_converted(environment, source.artifact_path, paths.cache_dir(), dtype, _err().print)
            copy_directory(converted, destination)
        except (ConvertError, VllmInstallError) as exc:
            _err().print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        declared = Declared(
            license=source.license,
            base_model=source.base_model,
            parent=parse_ref(source.key),
            training_data=source.training_data,
            fine_tuning_data=source.fine_tuning_data,
            lineage_notes=f"Dequantized from {source.key} ({source.quantization}, sha256 {source.sha256}) to {dtype} "
            "safetensors with transformers' GGUF loader (tokenizer read from the GGUF): the same weights, for vLLM.",
            alias=alias_name,
        )
        with byte_progress(f"sha256 {destination.name}", _err()) as progress:
            version = register_file(store, checker, destination, source.model, declared, _actor(actor), progress)
        _out().print(f"Registered [bold]{version.key}[/] (hf, {version.quantization}) from {source.key}: {destination}")
