"""``modelyard requests …``: query and export the stored request log."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from modelyard.observability.request_log_store import RequestLogStore, RequestQuery
from modelyard.observability.request_query import QueryError, build_query
from modelyard.rollouts.dataset import example
from modelyard.rollouts.feedback import FeedbackStore
from modelyard.store import migrate
from modelyard.store.database import Database, StoreUnavailable

requests_app = typer.Typer(no_args_is_help=True, help="The request log: every inference request's metadata.")

Route = Annotated[str | None, typer.Option(help="Model id clients sent, e.g. gemma-3-270m@canary.")]
Model = Annotated[str | None, typer.Option(help="Registered model name.")]
Version = Annotated[str | None, typer.Option(help="Version number.")]
Status = Annotated[str | None, typer.Option(help="HTTP status (200) or class (5xx).")]
Since = Annotated[str | None, typer.Option(help="15m, 2h, 7d or an ISO timestamp.")]
Until = Annotated[str | None, typer.Option(help="15m, 2h, 7d or an ISO timestamp.")]


def _filters(**values: object) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}


def _open() -> RequestLogStore:
    database = Database()
    migrate.upgrade(database)
    return RequestLogStore(database)


def _read(filters: dict[str, str], read: Callable[[RequestLogStore, RequestQuery], list[dict[str, Any]]]) -> list:
    """Run one query; a bad filter exits 2, an unreachable database 3 (the codes every command uses)."""
    try:
        return read(_open(), build_query(filters))
    except QueryError as exc:
        raise _fail(str(exc), 2) from None
    except StoreUnavailable as exc:
        raise _fail(str(exc), 3) from None


def _fail(message: str, code: int) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@requests_app.command("list")
def list_requests(
    route: Route = None,
    model: Model = None,
    version: Version = None,
    status: Status = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(help="Newest N.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Show recent requests, newest first."""
    filters = _filters(route=route, model=model, version=version, status=status, since=since, until=until, limit=limit)
    rows = _read(filters, RequestLogStore.query)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"Requests (newest {len(rows)})", title_justify="left")
    for column in ("When (UTC)", "Route", "Version", "Status", "ms", "TTFT ms", "In", "Out", "Request id"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["received_at"][:23].replace("T", " "),
            row["route"],
            row["version"] or "—",
            str(row["status"]) + (f" {row['error_type']}" if row["error_type"] else ""),
            f"{row['duration_ms']:.1f}",
            f"{row['ttft_ms']:.1f}" if row["ttft_ms"] is not None else "—",
            str(row["prompt_tokens"]),
            str(row["completion_tokens"]),
            row["request_id"],
        )
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 160
    console.print(table)


@requests_app.command("export")
def export_requests(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write (- for stdout).")],
    route: Route = None,
    model: Model = None,
    version: Version = None,
    status: Status = None,
    since: Since = None,
    until: Until = None,
    bodies: Annotated[bool, typer.Option("--bodies", help="Include stored prompt/response bodies.")] = False,
    feedback: Annotated[
        bool,
        typer.Option(
            "--feedback",
            help="Only rated requests, as a chat-format dataset: messages, prompt, answer, score, version "
            "(needs their bodies kept: --request-log-bodies).",
        ),
    ] = False,
) -> None:
    """Export matching requests as JSON Lines, for offline evaluation (or, with --feedback, a rated dataset)."""
    skipped = 0
    try:
        query = build_query(_filters(route=route, model=model, version=version, status=status, since=since,
                                     until=until, bodies=bodies), default_limit=0)  # fmt: skip
        store = _open()
        lines: Iterator[dict[str, Any] | None] = _rated_examples(store, query) if feedback else iter(store.iter(query))
        sink = sys.stdout.buffer if str(out) == "-" else out.open("wb")
        count = 0
        try:
            for line in lines:
                if line is None:
                    skipped += 1
                    continue
                sink.write(orjson.dumps(line) + b"\n")
                count += 1
        finally:
            if sink is not sys.stdout.buffer:
                sink.close()
    except QueryError as exc:
        raise _fail(str(exc), 2) from None
    except StoreUnavailable as exc:
        raise _fail(str(exc), 3) from None
    if skipped:
        Console(stderr=True).print(f"skipped {skipped} rated requests whose bodies were not kept")
    if str(out) != "-":
        Console(stderr=True).print(f"wrote {count} {'rated examples' if feedback else 'requests'} to {out}")


def _rated_examples(store: RequestLogStore, query: RequestQuery) -> Iterator[dict[str, Any] | None]:
    """The dataset lines of rated requests (None for one whose bodies were not kept)."""
    rated = FeedbackStore(store.database).rated(query.route, query.model, query.version, query.since, query.until)
    for row, given in rated:
        yield example(row, given)


@requests_app.command("shadow")
def shadow_pairs(
    route: Route = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(help="Newest N copies.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Shadow copies side by side with their primaries: target, status, latency, tokens, whether outputs match."""
    pairs = _read(_filters(route=route, since=since, until=until, limit=limit), RequestLogStore.shadow_pairs)
    if as_json:
        sys.stdout.write(json.dumps(pairs, indent=2) + "\n")
        return
    table = Table(title=f"Shadow comparisons (newest {len(pairs)})", title_justify="left")
    for column in ("When (UTC)", "Route", "Primary", "Shadow", "Status", "ms", "Out tokens", "Match", "Similarity"):
        table.add_column(column, overflow="fold")
    for pair in pairs:
        primary, shadow = pair["primary"] or {}, pair["shadow"]
        similarity = shadow.get("similarity")
        table.add_row(
            shadow["received_at"][:23].replace("T", " "),
            shadow["route"],
            primary.get("target", "—"),
            shadow["target"],
            f"{primary.get('status', '—')} / {shadow['status']}",
            f"{primary.get('duration_ms', 0):.0f} / {shadow['duration_ms']:.0f}",
            f"{primary.get('completion_tokens', '—')} / {shadow['completion_tokens']}",
            {True: "yes", False: "no", None: "—"}[shadow.get("outputs_match")],
            f"{similarity:.2f}" if similarity is not None else "—",
        )
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 160
    console.print(table)
