"""``modelyard keys …`` and ``modelyard audit …``: API keys, spend and the audit log from the command line.

Like ``modelyard models``, these talk to the database directly (``MODELYARD_DATABASE_URL`` or the SQLite file in
the data directory); running gateways see key changes within their poll interval (250 ms by default). Hashing a
new key needs the same pepper as the gateways: ``MODELYARD_KEY_PEPPER``, or the data directory's pepper file.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from modelyard.audit.log import AuditLog
from modelyard.security.budgets import current_periods
from modelyard.security.key_store import KeyRequestError, KeyStore, NewKey
from modelyard.security.keys import BUDGET_PERIODS, SCOPES, KeyHasher, KeyLimits, load_pepper
from modelyard.store import migrate
from modelyard.store.database import Database, StoreUnavailable

keys_app = typer.Typer(no_args_is_help=True, help="API keys: create (secret shown once), list, revoke, expire, spend.")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log of admin actions.")

ActorOption = Annotated[
    str | None, typer.Option("--actor", envvar="MODELYARD_ACTOR", help="Who is acting (default: user@host).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _actor(explicit: str | None) -> str:
    return explicit or f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _err(message: str, code: int) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def _database() -> Iterator[Database]:
    try:
        database = Database()
        try:
            migrate.upgrade(database)
            yield database
        finally:
            database.dispose()
    except KeyRequestError as exc:
        raise _err(exc.message, 2) from None
    except StoreUnavailable as exc:
        raise _err(str(exc), 3) from None


def _keys(database: Database) -> KeyStore:
    return KeyStore(database, KeyHasher(load_pepper()))


def _out() -> Console:
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 180
    return console


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name saying whose key this is, e.g. team-search-prod.")],
    scope: Annotated[list[str], typer.Option("--scope", help=f"Repeat: {', '.join(SCOPES)}.")] = ["inference"],  # noqa: B006
    model: Annotated[list[str], typer.Option("--model", help="Allowed route/model glob (repeat); none: all.")] = [],  # noqa: B006
    region: Annotated[list[str], typer.Option("--region", help="Allowed region (repeat); none: all.")] = [],  # noqa: B006
    rpm: Annotated[int, typer.Option(help="Requests per minute (0: unlimited).")] = 0,
    tpm: Annotated[int, typer.Option(help="Tokens per minute (0: unlimited).")] = 0,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once (0: unlimited).")] = 0,
    token_budget: Annotated[int, typer.Option(help="Tokens per budget period (0: none).")] = 0,
    cost_budget: Annotated[float, typer.Option(help="USD per budget period (0: none).")] = 0.0,
    budget_period: Annotated[str, typer.Option(help=f"{' or '.join(BUDGET_PERIODS)} (UTC).")] = "month",
    priority: Annotated[
        str, typer.Option(help="interactive, or batch: the class its requests wait in for engine slots.")
    ] = "interactive",
    expires_in: Annotated[str | None, typer.Option(help="e.g. 30d, 12h, 15m.")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key. The secret is printed once; only its keyed hash is stored."""
    limits = KeyLimits(rpm, tpm, concurrency, token_budget, cost_budget, budget_period, priority)
    expires = datetime.now(UTC) + _duration(expires_in) if expires_in else None
    new = NewKey(name, tuple(scope), tuple(model), tuple(region), limits, expires)
    with _database() as database:
        record, secret = _keys(database).create(new, _actor(actor))
    if as_json:
        _print_json({**record.to_json(), "key": secret})
        return
    print(secret)
    Console(stderr=True).print(
        f"Created {record.id} ({record.name}, scopes {', '.join(record.scopes)}). The key above is shown only now."
    )


@keys_app.command("list")
def list_keys(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Keys with their scopes, limits and status (never secrets)."""
    with _database() as database:
        records = _keys(database).list(include_revoked=all_keys)
    if as_json:
        _print_json([r.to_json() for r in records])
        return
    table = Table("id", "name", "prefix", "scopes", "models", "limits", "status", "expires", "created by")
    for r in records:
        limits = ", ".join(f"{k}={v}" for k, v in r.limits.items() if v and k != "budget_period")
        table.add_row(
            r.id,
            r.name,
            r.prefix + "…",
            ",".join(r.scopes),
            ",".join(r.models) or "*",
            limits or "-",
            r.status,
            r.expires_at.isoformat(timespec="seconds") if r.expires_at else "-",
            r.created_by,
        )
    _out().print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")], actor: ActorOption = None) -> None:
    """Revoke a key; every gateway refuses it within a second."""
    with _database() as database:
        record = _keys(database).revoke(key_id, _actor(actor))
    print(f"{record.id} ({record.name}) revoked at {record.revoked_at}")


@keys_app.command("expire")
def expire(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    in_: Annotated[str, typer.Option("--in", help="When: now, or 30d, 12h, 15m.")] = "now",
    actor: ActorOption = None,
) -> None:
    """Set (or bring forward) a key's expiry."""
    when = datetime.now(UTC) + (timedelta(0) if in_ == "now" else _duration(in_))
    with _database() as database:
        record = _keys(database).set_expiry(key_id, when, _actor(actor))
    print(f"{record.id} ({record.name}) expires at {record.expires_at}")


@keys_app.command("spend")
def spend(
    key_id: Annotated[str | None, typer.Argument(help="One key's id; all keys if left out.")] = None,
    period: Annotated[str | None, typer.Option(help="d2026-11-23 or m2026-11; default: today and this month.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Tokens, cost and requests per key per period (as written by the gateways, at most ~1 s behind)."""
    with _database() as database:
        store = _keys(database)
        rows = store.spend([period] if period else (None if key_id else current_periods()), key_id)
        names = {r.id: (r.name, r.limits) for r in store.list()}
    if as_json:
        _print_json(rows)
        return
    table = Table("key", "name", "period", "tokens", "cost (USD)", "requests", "budget")
    for row in rows:
        name, limits = names.get(row["key_id"], ("?", {}))
        kind = "d" if limits.get("budget_period") == "day" else "m"
        budget = []
        if row["period"].startswith(kind):
            if limits.get("token_budget"):
                budget.append(f"{row['tokens']}/{limits['token_budget']} tokens")
            if limits.get("cost_budget_usd"):
                budget.append(f"${row['cost_usd']:.4f}/${limits['cost_budget_usd']:g}")
        table.add_row(
            row["key_id"],
            name,
            row["period"],
            str(row["tokens"]),
            f"{row['cost_usd']:.6f}",
            str(row["requests"]),
            "; ".join(budget) or "-",
        )
    _out().print(table)


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(help="Newest N.")] = 50,
    action: Annotated[str | None, typer.Option(help="e.g. key.revoke, registry.alias_moved.")] = None,
    target: Annotated[str | None, typer.Option(help="A key id, model name, 'guardrails'.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Recent admin actions, newest first: who, when, what, before and after."""
    with _database() as database:
        records = AuditLog(database).list(limit, action, target)
    if as_json:
        _print_json([r.to_json() for r in records])
        return
    table = Table("id", "at", "actor", "action", "target", "before", "after")
    for r in records:
        table.add_row(
            str(r.id),
            r.at.isoformat(timespec="seconds"),
            r.actor,
            r.action,
            r.target,
            _short(r.before),
            _short(r.after),
        )
    _out().print(table)


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain; exit 1 naming the first edited, deleted or re-ordered record."""
    with _database() as database:
        result = AuditLog(database).verify()
    if result.ok:
        print(f"audit log OK: {result.checked} records, chain head {result.head_id} {result.head_hash}")
        return
    print(
        f"audit log BROKEN: {result.problem} (first bad record id {result.record_id}; "
        f"{result.checked} records verified before it; head says {result.head_id})"
    )
    raise typer.Exit(1)


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "-"
    return text if len(text) <= 60 else text[:57] + "…"


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise _err(f"not a duration: {text!r} (use e.g. 30d, 12h, 15m, 90s)", 2) from None
