"""Reloading the guardrails file while the gateway runs, the way the deployments file is reloaded.

An operator edits ``--guardrails FILE`` (in place, or by writing a new file and renaming it, as editors and
config-management tools do); within about a second the new configuration is validated as a whole and swapped in.
A file that does not validate — broken YAML, an unknown key, a bad regex, a file cut short by a half-finished
copy — is refused: the running configuration stays, the refusal is logged (once per distinct bad text, not every
poll) and counted in ``modelyard_guardrails_reloads_total{result="rejected"}``, and ``/ready`` shows the error
until a good file is in place. A file that is missing for a moment (being replaced) is looked at again at the
next poll, not refused.

The check is a ``stat`` a second off the event loop, never on a request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from modelyard.security.guardrails.config import GuardrailConfig, GuardrailConfigError, load_config

log = logging.getLogger("modelyard.security")

POLL_S = 1.0  # the deployments file's check interval too

Stamp = tuple[int, int, int]  # (inode, mtime_ns, size): a rename of a new file changes the inode


def file_stamp(path: Path) -> Stamp:
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def read_file(path: Path) -> tuple[str, GuardrailConfig]:
    """The file's text (for the digest that tells a real change from a touch) and its validated configuration.

    An empty file is refused here (not at start-up): it is what a reader sees between an in-place save's
    truncation and its write, and taking it would drop every guardrail for a moment; ``routes: {}`` says "none"."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise GuardrailConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if not text.strip():
        raise GuardrailConfigError(f"{path}: is empty (write `routes: {{}}` for no guardrails)")
    return text, load_config(path)


class GuardrailsFileWatcher:
    def __init__(
        self,
        path: Path,
        apply: Callable[[GuardrailConfig], None],
        registry: Any,
        poll_s: float = POLL_S,
    ) -> None:
        """``apply`` receives each new configuration that validated; the file was loaded once already at start
        (a bad file then stops the start-up), so only changes after this moment are read."""
        self.path = path
        self._apply = apply
        self._poll_s = poll_s
        self._stamp: Stamp | None = None
        self._digest: str | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._reloads = Counter(
            "modelyard_guardrails_reloads",
            "Guardrails file changes read while running: applied, or rejected (the running configuration kept).",
            ("result",),
            registry=registry,
        )
        for result in ("applied", "rejected"):
            self._reloads.labels(result)
        with contextlib.suppress(OSError):
            self._stamp = file_stamp(path)
            self._digest = _digest(path.read_text())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="guardrails-file-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self.check()

    async def check(self) -> None:
        """One look at the file: apply a changed, valid file; refuse a changed, invalid one."""
        try:
            stamp = await asyncio.to_thread(file_stamp, self.path)
        except OSError:
            return  # being replaced (written elsewhere, then renamed over it): look again next time
        if stamp == self._stamp:
            return
        try:
            text, config = await asyncio.to_thread(read_file, self.path)
            if await asyncio.to_thread(file_stamp, self.path) != stamp:
                return  # written to while being read: read it whole at the next poll
        except OSError:
            return
        except GuardrailConfigError as exc:
            self._stamp = stamp
            digest = _digest(_text_or_empty(self.path))
            if digest != self._digest or self.last_error is None:
                self._refused(str(exc))
            self._digest = digest  # the same bad text is not refused (and logged) again every second
            return
        self._stamp = stamp
        digest = _digest(text)
        if digest == self._digest and self.last_error is None:
            return  # touched, not changed
        self._digest = digest
        self._apply(config)
        self.last_error = None
        self._reloads.labels("applied").inc()
        log.info("guardrails file reloaded: %s (%d routes)", self.path, len(config.routes))

    def _refused(self, error: str) -> None:
        self.last_error = error
        self._reloads.labels("rejected").inc()
        log.error("guardrails file change refused, still enforcing the previous configuration: %s", error)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _text_or_empty(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
