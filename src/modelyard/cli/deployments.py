"""``modelyard deployments``: check a deployments file offline, or apply one to a running gateway."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from modelyard.routing.config import DeploymentsError, load_deployments

deployments_app = typer.Typer(no_args_is_help=True, help="Routes, targets and traffic policies (the --config file).")

_URL = typer.Option("--url", envvar="MODELYARD_URL", help="The running gateway.")


@deployments_app.command("check")
def check(path: Annotated[Path, typer.Argument(help="Deployments file (YAML or JSON).")]) -> None:
    """Validate a file the way a gateway does before applying it (registry references are checked on apply)."""
    console = Console()
    try:
        spec = load_deployments(path)
    except DeploymentsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for name, route in spec.routes.items():
        targets = ", ".join(f"{t} ({s.weight:g})" for t, s in route.targets.items())
        console.print(f"[green]ok[/green] route [bold]{name}[/bold]: {targets}")
    if not spec.routes:
        console.print("[green]ok[/green] no routes declared (only the registry's own model ids are served)")


@deployments_app.command("apply")
def apply(
    path: Annotated[Path, typer.Argument(help="Deployments file (YAML or JSON).")],
    url: Annotated[str, _URL] = "http://127.0.0.1:8080",
) -> None:
    """Send a whole file to a running gateway: applied atomically, or refused with the reason."""
    console = Console()
    try:
        text = path.read_text()
    except OSError as exc:
        console.print(f"[red]error:[/red] cannot read {path}: {exc.strerror}")
        raise typer.Exit(2) from None
    headers = {"x-modelyard-actor": os.environ.get("USER", "cli")}
    try:
        response = httpx.put(f"{url.rstrip('/')}/admin/deployments", content=text, headers=headers, timeout=600)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach {url}: {exc}")
        raise typer.Exit(3) from None
    if response.status_code != 200:
        message = response.json().get("error", {}).get("message", response.text)
        console.print(f"[red]refused ({response.status_code}):[/red] {message}")
        raise typer.Exit(1)
    console.print(f"[green]applied[/green]: routes {', '.join(response.json().get('routes', [])) or 'none'}")
