"""``modelyard models gates …``: declare what a version must prove before ``production`` may point at it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli.models import _actor, _err, _out, _registry
from modelyard.evals.gates import gates_to_json, load_gates_file
from modelyard.evals.storage import EvalStore
from modelyard.evals.suite import SuiteError

gates_app = typer.Typer(no_args_is_help=True, help="Promotion gates: evidence required before an alias moves.")

ActorOption = Annotated[
    str | None, typer.Option("--actor", envvar="MODELYARD_ACTOR", help="Who is acting (default: user@host).")
]


@gates_app.command("set")
def set_gates(
    name: Annotated[str, typer.Argument(help="Model name.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="Gates YAML (see docs/evals.md).")],
    actor: ActorOption = None,
) -> None:
    """Replace a model's gates (recorded as a gates_set event)."""
    try:
        spec = load_gates_file(file)
    except SuiteError as exc:
        _err().print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    with _registry() as (store, _):
        EvalStore(store.database).set_gates(name, spec, _actor(actor))
    labels = ", ".join(g.label for g in spec.gates)
    _out().print(f"{name}: {len(spec.gates)} gate(s) on {', '.join(spec.aliases)}: {labels}")


@gates_app.command("show")
def show_gates(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Print a model's gates as JSON."""
    with _registry() as (store, _):
        spec = EvalStore(store.database).get_gates(name)
    sys.stdout.write(json.dumps(gates_to_json(spec) if spec else None, indent=2) + "\n")


@gates_app.command("clear")
def clear_gates(name: Annotated[str, typer.Argument(help="Model name.")], actor: ActorOption = None) -> None:
    """Remove a model's gates (recorded as a gates_set event with no gates)."""
    with _registry() as (store, _):
        EvalStore(store.database).set_gates(name, None, _actor(actor))
    _out().print(f"{name}: gates removed")
