"""``modelyard rollout …``: start a canary rollout, watch it, and act on a paused one.

The commands work on the shared database directly (as ``modelyard requests`` does): the gateway holding the
``rollouts`` lease picks a started rollout up within a look, and every gateway moves its traffic within a second.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
import time
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
from modelyard.rollouts import operations
from modelyard.rollouts.controller import RolloutController
from modelyard.rollouts.plan import PlanError, parse_plan
from modelyard.rollouts.store import DecisionRecord, Rollout, RolloutConflict, RolloutNotFound, RolloutStore
from modelyard.store.database import StoreUnavailable

rollout_app = typer.Typer(no_args_is_help=True, help="Canary rollouts judged by statistics, step by step.")

Actor = Annotated[str | None, typer.Option("--actor", envvar="MODELYARD_ACTOR", help="Who is acting.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _actor(explicit: str | None) -> str:
    return explicit or f"{getpass.getuser()}@{socket.gethostname()}"


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


@contextmanager
def _stores() -> Iterator[tuple[RolloutStore, RegistryStore, RolloutController]]:
    """Open the stores; failures become one line and the usual exit codes (2 bad input, 3 database, 4 refused)."""
    try:
        database = open_database()
        try:
            registry = registry_store(database)
            store = RolloutStore(database)
            yield store, registry, RolloutController(store, registry, "cli")
        finally:
            database.dispose()
    except PlanError as exc:
        _err().print(f"[bold red]error:[/] plan: {exc}", highlight=False)
        raise typer.Exit(2) from None
    except (RegistryError, RolloutNotFound) as exc:
        _err().print(f"[bold red]error:[/] {getattr(exc, 'message', exc)}", highlight=False)
        raise typer.Exit(2) from None
    except RolloutConflict as exc:
        _err().print(f"[bold red]refused:[/] {exc}", highlight=False)
        raise typer.Exit(4) from None
    except StoreUnavailable as exc:
        _err().print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(3) from None


@rollout_app.command("start")
def start(
    route: Annotated[str, typer.Argument(help="The route to move (the model id clients send).")],
    candidate: Annotated[str, typer.Option("--candidate", help="MODEL:VERSION to roll out.")],
    steps: Annotated[str | None, typer.Option(help="Candidate percentages, e.g. 5,25,50,100.")] = None,
    guardrail: Annotated[
        list[str] | None,
        typer.Option(help="METRIC=ALLOWED (repeatable), e.g. latency=0.2 error_rate=0.02 eval_score=0.1."),
    ] = None,
    plan_file: Annotated[Path | None, typer.Option("--plan", help="A YAML plan (flags override its keys).")] = None,
    min_sample: Annotated[int | None, typer.Option(help="Requests per arm per step before judging.")] = None,
    step_max: Annotated[float | None, typer.Option(help="Seconds before an undecided step pauses.")] = None,
    look: Annotated[float | None, typer.Option(help="Seconds between looks.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Significance level.")] = None,
    webhook: Annotated[str | None, typer.Option(help="URL that receives each decision as JSON.")] = None,
    live_eval: Annotated[str | None, typer.Option(help="Eval suite scoring sampled live answers.")] = None,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Start a rollout: the candidate gets the first step's share, then moves on as the statistics allow."""
    raw: dict[str, Any] = {}
    if plan_file is not None:
        raw.update(load_mapping(plan_file, "a plan"))
    flags = {"steps": steps, "min_sample": min_sample, "step_max_s": step_max, "look_s": look, "alpha": alpha}
    raw.update({key: value for key, value in flags.items() if value is not None})
    if webhook is not None:
        raw["webhook"] = webhook
    if live_eval is not None:
        raw["live_eval"] = {"suite": str(Path(live_eval).resolve())}
    if guardrail:
        raw["guardrails"] = parse_guardrails(guardrail)
    with _stores() as (store, registry, _):
        rollout = operations.start_rollout(store, registry, route, candidate, parse_plan(raw), _actor(actor))
    _show(rollout, [], as_json)


@rollout_app.command("status")
def status(
    rollout_id: Annotated[int | None, typer.Argument(help="A rollout id (default: every active rollout).")] = None,
    watch: Annotated[float | None, typer.Option(help="Repeat every N seconds until it finishes.")] = None,
    as_json: Json = False,
) -> None:
    """Where a rollout stands: its step, share, state and last decision."""
    while True:
        with _stores() as (store, _, _):
            if rollout_id is None:
                rollouts = store.find(active_only=True)
                if as_json:
                    sys.stdout.write(json.dumps([r.to_json() for r in rollouts], indent=2) + "\n")
                else:
                    _table(rollouts)
                return
            rollout = store.get(rollout_id)
            decisions = store.decisions(rollout_id)
        _show(rollout, decisions[-1:], as_json)
        if watch is None or not rollout.active:
            return
        time.sleep(watch)


@rollout_app.command("history")
def history(rollout_id: Annotated[int, typer.Argument()], as_json: Json = False) -> None:
    """Every decision of a rollout with the numbers behind it."""
    with _stores() as (store, _, _):
        rollout = store.get(rollout_id)
        decisions = store.decisions(rollout_id)
    _show(rollout, decisions, as_json)


def _act(name: str, rollout_id: int, actor: str | None, as_json: bool) -> None:
    with _stores() as (store, _, controller):
        who = _actor(actor)
        if name == "promote":
            rollout = operations.promote(controller, store, rollout_id, who).rollout
        else:
            rollout = {"resume": operations.resume, "rollback": operations.rollback, "abort": operations.abort}[name](
                store, rollout_id, who
            )
        decisions = store.decisions(rollout_id)
    _show(rollout, decisions[-1:], as_json)


@rollout_app.command("resume")
def resume(rollout_id: Annotated[int, typer.Argument()], actor: Actor = None, as_json: Json = False) -> None:
    """Run a paused rollout again at its step (judged from now on)."""
    _act("resume", rollout_id, actor, as_json)


@rollout_app.command("promote")
def promote(rollout_id: Annotated[int, typer.Argument()], actor: Actor = None, as_json: Json = False) -> None:
    """Promote the candidate now, through the eval gates (a refusal pauses the rollout and says why)."""
    _act("promote", rollout_id, actor, as_json)


@rollout_app.command("rollback")
def rollback(rollout_id: Annotated[int, typer.Argument()], actor: Actor = None, as_json: Json = False) -> None:
    """Send all traffic back to the control version."""
    _act("rollback", rollout_id, actor, as_json)


@rollout_app.command("abort")
def abort(rollout_id: Annotated[int, typer.Argument()], actor: Actor = None, as_json: Json = False) -> None:
    """Stop without a verdict: traffic returns to control, no alias moves."""
    _act("abort", rollout_id, actor, as_json)


def _show(rollout: Rollout, decisions: list[DecisionRecord], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(
            json.dumps({**rollout.to_json(), "decisions": [d.to_json() for d in decisions]}, indent=2) + "\n"
        )
        return
    out = Console(soft_wrap=True)
    out.print(
        f"rollout {rollout.id}: {rollout.route} {rollout.model} "
        f"v{rollout.control_version} → v{rollout.candidate_version}  [bold]{rollout.state}[/] "
        f"at step {rollout.step + 1}/{len(rollout.steps)} ({rollout.share} %)",
        highlight=False,
    )
    out.print(f"  {rollout.reason}", highlight=False)
    for decision in decisions:
        out.print(
            f"  {decision.at:%Y-%m-%d %H:%M:%S} {decision.action:<8} at {decision.share:>3} %  {decision.reason}",
            highlight=False,
        )
        for comparison in decision.numbers.get("comparisons", []):
            out.print(
                f"      {comparison['metric']:<12} {comparison['verdict']:<30} effect {comparison['effect']:+.4g} "
                f"[{comparison['lower']:+.4g}, {comparison['upper']:+.4g}] p={comparison['p_value']:.3g} "
                f"n={comparison['control_n']}/{comparison['treatment_n']}",
                highlight=False,
            )


def _table(rollouts: list[Rollout]) -> None:
    table = Table(title=f"Active rollouts ({len(rollouts)})", title_justify="left")
    for column in ("Id", "Route", "Model", "Control", "Candidate", "Share", "State", "Reason"):
        table.add_column(column, overflow="fold")
    for r in rollouts:
        table.add_row(
            str(r.id), r.route, r.model, str(r.control_version), str(r.candidate_version), f"{r.share} %", r.state,
            r.reason,
        )  # fmt: skip
    Console(soft_wrap=True).print(table)
