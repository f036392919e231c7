"""The gateway's in-memory view of API keys, and the poller that keeps it fresh.

A request looks its key up with one HMAC and one dictionary read on an immutable snapshot; no database read, no
lock. A background task polls the one-row revision counter every ``poll_interval_s`` (250 ms by default) from a
worker thread and, when it moved, loads every live key and swaps the snapshot whole. So a revocation made on any
replica takes effect everywhere within one poll plus one load (well under a second); a write made through this
gateway's own admin API refreshes at once (:meth:`SnapshotPoller.refresh_now`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from modelyard.security.key_store import KeyStore
from modelyard.security.keys import KeyGrant, KeyHasher

log = logging.getLogger("modelyard.security")

_MEMO_MAX = 4096  # presented keys remembered per snapshot (only keys that matched a grant)


class KeySnapshot:
    """Immutable: hash → grant. Replaced, never mutated."""

    __slots__ = ("_by_hash", "revision")

    def __init__(self, revision: int = -1, by_hash: Mapping[str, KeyGrant] | None = None) -> None:
        self.revision = revision
        self._by_hash = dict(by_hash or {})

    def lookup(self, key_hash: str) -> KeyGrant | None:
        return self._by_hash.get(key_hash)

    def by_id(self, key_id: str) -> KeyGrant | None:
        """A key's grant by its public id (background work on a key's behalf, e.g. batch lines; not per request)."""
        return next((g for g in self._by_hash.values() if g.id == key_id), None)

    def __len__(self) -> int:
        return len(self._by_hash)


class SnapshotPoller:
    def __init__(
        self,
        store: KeyStore,
        hasher: KeyHasher,
        poll_interval_s: float = 0.25,
        on_guardrails: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> None:
        self._store = store
        self.hasher = hasher
        self._poll_interval_s = poll_interval_s
        self._on_guardrails = on_guardrails
        self.snapshot = KeySnapshot()
        self._memo: dict[bytes, tuple[bytes, KeyGrant]] = {}
        self.loaded_at = 0.0
        self.error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._load()  # the first snapshot before serving: a gateway must not start with "no keys"
        self._task = asyncio.create_task(self._run(), name="key-snapshot-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def refresh_now(self) -> None:
        self._wake.set()

    def lookup(self, key: bytes) -> KeyGrant | None:
        """Grant for a presented key. Known keys are memoised per snapshot (skipping the HMAC on repeat calls); the
        memo is dropped with every new snapshot, so a revocation is never served from it.

        No comparison reveals a stored key through its timing: the snapshot is looked up by the presented key's
        keyed HMAC (an attacker cannot steer its bytes without the pepper), and the memo's dict lookup (a SipHash
        with the process's random seed) is confirmed with ``hmac.compare_digest``."""
        remembered = self._memo.get(key)
        if remembered is not None and hmac.compare_digest(remembered[0], key):
            return remembered[1]
        grant = self.snapshot.lookup(self.hasher(key))
        if grant is not None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo = {}
            self._memo[key] = (key, grant)
        return grant

    async def _run(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            self._wake.clear()
            try:
                revision = await asyncio.to_thread(self._store.revision)
                if revision != self.snapshot.revision:
                    await self._load()
                if failures:
                    log.info("key snapshot: database reachable again")
                failures, self.error = 0, None
            except Exception as exc:  # keep serving from the last snapshot; say so in /ready
                failures += 1
                self.error = f"key snapshot not refreshed: {exc}"
                if failures == 1 or failures % 40 == 0:
                    log.warning("key snapshot: cannot reach the database (%d tries): %s", failures, exc)
                await asyncio.sleep(min(5.0, 0.25 * failures))

    async def _load(self) -> None:
        revision, grants, guardrails = await asyncio.to_thread(self._store.grants)
        self.snapshot = KeySnapshot(revision, grants)
        self._memo = {}
        self.loaded_at = time.time()
        if self._on_guardrails is not None:
            self._on_guardrails(guardrails)
