"""Keeping the served routes in step with the deployments configuration: validate a change as a whole, apply it
without a restart, and keep serving the previous configuration when a change is refused.

The configuration lives in the shared database (``deploy/deployments_table.py``), so every gateway replica
serves the same one: a change applied through any replica's admin API (``PUT /admin/deployments``, which the
``modelyard deployments apply`` command sends) or through its file is stored there, and every other replica
polls the stored version (one primary-key read every ``--deployments-poll`` seconds, never on the request path)
and swaps in the new catalog within a second. The file stays a way to apply it: at start-up a file newer than the
stored configuration is applied and stored, and an edit of the file while running is applied and stored too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from modelyard.audit.log import AuditLog
from modelyard.deploy.deployments_table import DeploymentsTable, StoredDeployments
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.config import DeploymentsError, DeploymentsSpec, load_deployments, parse_deployments
from modelyard.store.database import StoreUnavailable

log = logging.getLogger("modelyard.deploy")


@dataclass(frozen=True)
class FileStamp:
    mtime_ns: int
    size: int


class Deployable(Protocol):
    """What serves a deployments configuration: the reconciler (``modelyard serve``) or the fleet of remote
    engines (``modelyard gateway``)."""

    deployments: DeploymentsSpec
    deployments_source: str

    async def apply_deployments(self, spec: DeploymentsSpec, source: str, fresh: bool = True) -> None: ...


class DeploymentsManager:
    def __init__(
        self,
        reconciler: Deployable,
        metrics: RoutingMetrics,
        path: Path | None,
        default_path: Path,
        poll_s: float = 1.0,
        audit: AuditLog | None = None,
        table: DeploymentsTable | None = None,
        table_poll_s: float = 0.25,
    ) -> None:
        """``table``: the shared configuration (None: the file alone, for a process without a database)."""
        self._table = table
        self._table_poll_s = table_poll_s
        self._version = 0  # the stored version this process serves
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
        self._poll_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        metrics.config_status(lambda: 0.0 if self.last_error else 1.0)

    def load_initial(self, actor: str = "start-up") -> None:
        """Before the first registry read: a bad file at start-up is an error (there is nothing to keep serving).
        With the shared table, the newer of the file and the stored configuration is served, and a newer file is
        stored (a replica started with a stale copy of the file serves what the others serve)."""
        stored = self._table.read() if self._table is not None else None
        if self.path is not None:
            text = _read(self.path)
            spec = parse_deployments(text, str(self.path))
            self._stamp, self._digest = _stamp(self.path), _digest(text)
            if stored is None or (stored.digest != self._digest and _file_is_newer(self._stamp, stored)):
                self._serve(spec, str(self.path), text)
                if self._table is not None:
                    self._version = self._table.write(text, self._digest, actor)
                return
        if stored is not None:
            self._serve(parse_deployments(stored.text, _STORED), _STORED, stored.text)
            self._version = stored.version

    def _serve(self, spec: DeploymentsSpec, source: str, text: str) -> None:
        self._reconciler.deployments, self._reconciler.deployments_source = spec, source
        self._text = text
        self.applied_at = time.time()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="deployments-watcher")
        if self._table is not None:
            self._poll_task = asyncio.create_task(self._follow_table(), name="deployments-follower")

    async def stop(self) -> None:
        for task in (self._task, self._poll_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def replace(self, text: str, actor: str) -> dict[str, Any]:
        """Validate and apply a whole new file (admin API), then persist it. Raises :class:`DeploymentsError`."""
        path = self.path or self._default_path
        async with self._lock:
            spec = parse_deployments(text, "request body")
            await self._reconciler.apply_deployments(spec, str(path))
            try:
                await asyncio.to_thread(_write_atomically, path, text)
                self.path = path
                self._stamp = _stamp(path)
            except OSError as exc:
                if self._table is None:
                    raise
                # A read-only file (a Kubernetes ConfigMap): the stored configuration is the one that counts.
                log.warning("deployments applied and stored; %s not rewritten: %s", path, exc.strerror or exc)
            self._digest = _digest(text)
            self._applied(f"admin API ({actor})")
            await self._store(text, actor)
            await self._record(actor, "deployments.replace", str(path), text)
        return self.status()

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "version": self._version if self._table is not None else None,
            "applied_at": self.applied_at,
            "digest": self._digest,
            "last_error": self.last_error,
            "routes": sorted(self._reconciler.deployments.routes),
        }

    def current_text(self) -> str:
        """What is served now (blocking when it falls back to the file: call through a thread)."""
        if self._text is not None:
            return self._text
        if self.path is None or not self.path.exists():
            return "routes: {}\n"
        return self.path.read_text()

    async def _store(self, text: str, actor: str) -> None:
        """Put an applied text in the shared table, so every replica serves it. A database outage leaves it
        applied here only, and says so (the file, when there is one, still has it)."""
        if self._table is None:
            return
        try:
            self._version = await asyncio.to_thread(self._table.write, text, _digest(text), actor)
        except StoreUnavailable as exc:
            self.last_error = f"applied on this replica only: the database is unreachable ({exc})"
            log.error("deployments %s", self.last_error)

    async def _follow_table(self) -> None:
        """Apply what another replica stored: poll the version, read the text only when it moved."""
        assert self._table is not None
        while True:
            await asyncio.sleep(self._table_poll_s)
            try:
                if await asyncio.to_thread(self._table.version) == self._version:
                    continue
                async with self._lock:
                    stored = await asyncio.to_thread(self._table.read)
                    if stored is not None and stored.version != self._version:
                        await self._adopt(stored)
            except StoreUnavailable as exc:
                log.debug("deployments table unreachable; serving the last configuration: %s", exc)

    async def _adopt(self, stored: StoredDeployments) -> None:
        self._version = stored.version
        if stored.digest == _digest(self._text or ""):
            return
        try:
            spec = parse_deployments(stored.text, _STORED)
            await self._reconciler.apply_deployments(spec, _STORED, fresh=False)
        except DeploymentsError as exc:
            self._refused(exc)
            return
        self._text, self._digest = stored.text, stored.digest
        self._applied(f"stored version {stored.version} by {stored.updated_by}")

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
        await self._store(text, "file change")
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


_STORED = "the stored deployments configuration"


def _file_is_newer(stamp: FileStamp, stored: StoredDeployments) -> bool:
    written = stored.updated_at if stored.updated_at.tzinfo else stored.updated_at.replace(tzinfo=UTC)
    return datetime.fromtimestamp(stamp.mtime_ns / 1e9, UTC) > written


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
