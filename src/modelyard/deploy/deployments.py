"""Keeping the served routes in step with the deployments file: watch it, validate a change as a whole, apply it
without a restart, and keep serving the previous configuration when a change is refused.

The file is the source of truth (it is what a Kubernetes ConfigMap or a git checkout provides). The admin API's
``PUT /admin/deployments`` validates and applies the same way and then writes the file, so the next restart
serves what is running now. With several gateway replicas, change the file every replica reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.audit.log import AuditLog
from modelyard.deploy.reconciler import Reconciler
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.config import DeploymentsError, load_deployments, parse_deployments

log = logging.getLogger("modelyard.deploy")


@dataclass(frozen=True)
class FileStamp:
    mtime_ns: int
    size: int


class DeploymentsManager:
    def __init__(
        self,
        reconciler: Reconciler,
        metrics: RoutingMetrics,
        path: Path | None,
        default_path: Path,
        poll_s: float = 1.0,
        audit: AuditLog | None = None,
    ) -> None:
        self._audit = audit  # every applied change is appended to the tamper-evident audit log
        self._text: str | None = None  # what is applied now (the "before" of the next audit record)
        self._reconciler = reconciler
        self._metrics = metrics
        self.path = path
        self._default_path = default_path
        self._poll_s = poll_s
        self._stamp: FileStamp | None = None
        self._digest: str | None = None
        self.applied_at: float | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        metrics.config_status(lambda: 0.0 if self.last_error else 1.0)

    def load_initial(self) -> None:
        """Before the first registry read: a bad file at start-up is an error (there is nothing to keep serving)."""
        if self.path is None:
            return
        text = _read(self.path)
        spec = parse_deployments(text, str(self.path))
        self._reconciler.deployments, self._reconciler.deployments_source = spec, str(self.path)
        self._stamp, self._digest = _stamp(self.path), _digest(text)
        self._text = text
        self.applied_at = time.time()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="deployments-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def replace(self, text: str, actor: str) -> dict[str, Any]:
        """Validate and apply a whole new file (admin API), then persist it. Raises :class:`DeploymentsError`."""
        path = self.path or self._default_path
        async with self._lock:
            spec = parse_deployments(text, "request body")
            await self._reconciler.apply_deployments(spec, str(path))
            await asyncio.to_thread(_write_atomically, path, text)
            self.path = path
            self._stamp, self._digest = _stamp(path), _digest(text)
            self._applied(f"admin API ({actor})")
            await self._record(actor, "deployments.replace", str(path), text)
        return self.status()

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "applied_at": self.applied_at,
            "digest": self._digest,
            "last_error": self.last_error,
            "routes": sorted(self._reconciler.deployments.routes),
        }

    def current_text(self) -> str:
        if self.path is None or not self.path.exists():
            return "routes: {}\n"
        return self.path.read_text()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            if self.path is None:
                continue
            try:
                stamp = await asyncio.to_thread(_stamp, self.path)
            except OSError:
                continue  # being replaced (editors write a new file and rename it): look again next time
            if stamp == self._stamp:
                continue
            async with self._lock:
                await self._reload(stamp)

    async def _reload(self, stamp: FileStamp) -> None:
        assert self.path is not None
        try:
            text = await asyncio.to_thread(_read, self.path)
        except DeploymentsError as exc:
            self._refused(exc)
            return
        self._stamp = stamp
        if _digest(text) == self._digest:
            return
        try:
            spec = parse_deployments(text, str(self.path))
            await self._reconciler.apply_deployments(spec, str(self.path))
        except DeploymentsError as exc:
            self._digest = _digest(text)  # do not retry the same bad text every second
            self._refused(exc)
            return
        self._digest = _digest(text)
        self._applied("file change")
        await self._record("file change", "deployments.reload", str(self.path), text)

    async def _record(self, actor: str, action: str, target: str, text: str) -> None:
        before, self._text = self._text, text
        if self._audit is None:
            return
        try:
            await asyncio.to_thread(self._audit.append, actor, action, target, {"config": before}, {"config": text})
        except Exception as exc:  # the change is applied; a missing audit record is logged loudly, not hidden
            log.error("deployments change applied but not written to the audit log: %s", exc)

    def _applied(self, how: str) -> None:
        self.applied_at = time.time()
        self.last_error = None
        self._metrics.reloaded(True)
        routes = sorted(self._reconciler.deployments.routes)
        log.info("deployments applied (%s): routes %s", how, ", ".join(routes) or "none")

    def _refused(self, error: DeploymentsError) -> None:
        self.last_error = str(error)
        self._metrics.reloaded(False)
        log.error("deployments change refused, still serving the previous configuration: %s", error)


def check_file(path: Path) -> None:
    """``modelyard deployments check``: the same validation a running gateway applies (registry refs aside)."""
    load_deployments(path)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise DeploymentsError(str(path), "", f"cannot read the file: {exc.strerror or exc}") from None


def _stamp(path: Path) -> FileStamp:
    info = path.stat()
    return FileStamp(info.st_mtime_ns, info.st_size)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
