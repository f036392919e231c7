"""Progress display for long set-up steps: a bar on a terminal, a line every 10 % in CI logs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

ProgressCallback = Callable[[int, int, str], None]


@contextmanager
def build_progress(title: str, console: Console) -> Iterator[ProgressCallback]:
    if console.is_terminal:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[step]}"),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task(title, total=None, step="")

            def update(done: int, total: int, line: str) -> None:
                progress.update(task, completed=done, total=total, step=line[-60:])

            yield update
        return

    last_decile = -1

    def print_update(done: int, total: int, line: str) -> None:
        nonlocal last_decile
        decile = done * 10 // max(total, 1)
        if decile != last_decile:
            last_decile = decile
            print(f"{title}: {done}/{total} ({done * 100 // max(total, 1)}%)", file=sys.stderr, flush=True)

    yield print_update


@contextmanager
def byte_progress(title: str, console: Console) -> Iterator[Callable[[int, int], None]]:
    """Progress for hashing large files: a transfer-style bar on a terminal, nothing in logs (it is fast)."""
    if not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(title, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)
