"""``modelyard experiments …``: A/B experiments on a route, from a YAML file or flags; their live results."""

from __future__ import annotations

import getpass
import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelyard.cli.plan_input import load_mapping, parse_guardrails
from modelyard.registry.errors import RegistryError
from modelyard.registry.store import RegistryStore
from modelyard.roles.stores import open_database, registry_store
from modelyard.rollouts.experiment import parse_experiment
from modelyard.rollouts.experiment_store import ExperimentNotFound, ExperimentStore
from modelyard.rollouts.plan import PlanError
from modelyard.rollouts.store import RolloutConflict
from modelyard.store.database import StoreUnavailable

experiments_app = typer.Typer(no_args_is_help=True, help="A/B experiments judged by anytime-valid statistics.")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Actor = Annotated[str | None, typer.Option("--actor", envvar="MODELYARD_ACTOR", help="Who is acting.")]


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


@contextmanager
def _stores() -> Iterator[tuple[ExperimentStore, RegistryStore]]:
    try:
        database = open_database()
        try:
            yield ExperimentStore(database), registry_store(database)
        finally:
            database.dispose()
    except PlanError as exc:
        _err().print(f"[bold red]error:[/] experiment: {exc}", highlight=False)
        raise typer.Exit(2) from None
    except (RegistryError, ExperimentNotFound) as exc:
        _err().print(f"[bold red]error:[/] {getattr(exc, 'message', exc)}", highlight=False)
        raise typer.Exit(2) from None
    except RolloutConflict as exc:
        _err().print(f"[bold red]refused:[/] {exc}", highlight=False)
        raise typer.Exit(4) from None
    except StoreUnavailable as exc:
        _err().print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(3) from None


@experiments_app.command("create")
def create(
    file: Annotated[Path | None, typer.Argument(help="Experiment YAML (flags override its keys).")] = None,
    name: Annotated[str | None, typer.Option(help="Experiment name.")] = None,
    route: Annotated[str | None, typer.Option(help="Route to split.")] = None,
    control: Annotated[str | None, typer.Option(help="MODEL:VERSION of the control.")] = None,
    treatment: Annotated[list[str] | None, typer.Option(help="MODEL:VERSION (repeatable).")] = None,
    allocation: Annotated[str | None, typer.Option(help="Percentages, control first, e.g. 50,50.")] = None,
    primary: Annotated[str | None, typer.Option(help="Primary metric.")] = None,
    guardrail: Annotated[list[str] | None, typer.Option(help="METRIC=ALLOWED (repeatable).")] = None,
    sticky: Annotated[str | None, typer.Option(help="user or header:NAME.")] = None,
    min_sample: Annotated[int | None, typer.Option(help="Requests per arm before judging.")] = None,
    max_duration: Annotated[float | None, typer.Option(help="Seconds the experiment runs.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Significance level.")] = None,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Create (and start) an experiment; nothing changes when it is refused."""
    raw: dict[str, Any] = {}
    if file is not None:
        raw.update(load_mapping(file, "an experiment"))
    flags: dict[str, Any] = {"name": name, "route": route, "control": control, "primary": primary,
                             "sticky": sticky, "min_sample": min_sample, "max_duration_s": max_duration,
                             "alpha": alpha}  # fmt: skip
    raw.update({key: value for key, value in flags.items() if value is not None})
    if treatment:
        raw["treatments"] = treatment
    if allocation is not None:
        try:
            raw["allocation"] = [float(part) for part in allocation.split(",")]
        except ValueError:
            _err().print(f"[bold red]error:[/] --allocation {allocation!r}: expected percentages like 50,50")
            raise typer.Exit(2) from None
    if guardrail:
        raw["guardrails"] = parse_guardrails(guardrail)
    with _stores() as (store, registry):
        experiment = store.create(
            parse_experiment(raw), registry, actor or f"{getpass.getuser()}@{socket.gethostname()}"
        )
    _print(experiment.to_json(), as_json)


@experiments_app.command("list")
def list_experiments(as_json: Json = False) -> None:
    """Every experiment, newest first."""
    with _stores() as (store, _):
        experiments = store.find()
    if as_json:
        sys.stdout.write(json.dumps([e.to_json() for e in experiments], indent=2) + "\n")
        return
    table = Table(title=f"Experiments ({len(experiments)})", title_justify="left")
    for column in ("Name", "Route", "Control", "Treatments", "Allocation", "Primary", "State"):
        table.add_column(column, overflow="fold")
    for e in experiments:
        s = e.spec
        table.add_row(s.name, s.route, str(s.control), ", ".join(map(str, s.treatments)),
                      "/".join(f"{a:g}" for a in s.allocation), s.primary, e.state)  # fmt: skip
    Console(soft_wrap=True).print(table)


@experiments_app.command("show")
def show(name: Annotated[str, typer.Argument()], as_json: Json = False) -> None:
    """An experiment's results: each treatment against the control, in the same window."""
    with _stores() as (store, _):
        result = store.report(name)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    out = Console(soft_wrap=True)
    out.print(f"experiment {result['name']} on {result['route']}: [bold]{result['state']}[/]", highlight=False)
    out.print(f"  requests: {result['requests']}; sample ratio p = {result['sample_ratio']['p_value']:.3g}"
              + (" [bold red]MISMATCH[/]" if result["sample_ratio"]["mismatch"] else ""), highlight=False)  # fmt: skip
    for arm in result["results"]:
        out.print(f"  {arm['treatment']} vs {result['control']}:", highlight=False)
        for role, comparison in [("primary", arm["primary"]), *(("guardrail", c) for c in arm["guardrails"])]:
            if comparison is None:
                out.print(f"    {role}: not enough samples yet", highlight=False)
                continue
            out.print(
                f"    {role} {comparison['metric']:<12} {comparison['verdict']:<36} effect {comparison['effect']:+.4g} "
                f"[{comparison['lower']:+.4g}, {comparison['upper']:+.4g}] p={comparison['p_value']:.3g} "
                f"n={comparison['control_n']}/{comparison['treatment_n']}",
                highlight=False,
            )


@experiments_app.command("stop")
def stop(name: Annotated[str, typer.Argument()], actor: Actor = None, as_json: Json = False) -> None:
    """Stop an experiment: traffic returns to the control."""
    with _stores() as (store, _):
        experiment = store.stop(name, actor or f"{getpass.getuser()}@{socket.gethostname()}")
    _print(experiment.to_json(), as_json)


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    Console(soft_wrap=True).print(
        f"experiment {data['name']} on {data['route']}: {data['state']} "
        f"({data['control']} vs {', '.join(data['treatments'])}, allocation {data['allocation']})",
        highlight=False,
    )
