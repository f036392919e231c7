"""API key material: generation, the keyed hash that is stored instead of the secret, and what a key grants.

A key reads ``my-<43 url-safe characters>`` (256 random bits). The database stores only
HMAC-SHA256(pepper, key): with the pepper kept outside the database (``MODELYARD_KEY_PEPPER``, or a file in the
data directory), a stolen database dump cannot even be used to confirm a guessed key. Every replica of one
deployment must share the pepper (set ``MODELYARD_KEY_PEPPER``), or keys created on one will not verify on another.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard import paths

KEY_PREFIX = "my-"
PEPPER_ENV = "MODELYARD_KEY_PEPPER"
PEPPER_FILE = "key-pepper"

INFERENCE, ADMIN, READ = "inference", "admin", "read"
SCOPES = (INFERENCE, ADMIN, READ)
BUDGET_PERIODS = ("day", "month")


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def display_prefix(key: str) -> str:
    """What listings show so a human can tell keys apart: ``my-`` plus the first 6 characters of the secret."""
    return key[: len(KEY_PREFIX) + 6]


def load_pepper(data_dir: Path | None = None) -> bytes:
    """The server-side secret mixed into every key hash: from the environment, or a 0600 file created once."""
    explicit = os.environ.get(PEPPER_ENV)
    if explicit:
        return explicit.encode()
    path = (data_dir or paths.data_dir()) / PEPPER_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class KeyHasher:
    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper

    def __call__(self, key: str | bytes) -> str:
        raw = key.encode() if isinstance(key, str) else key
        return hmac.digest(self._pepper, raw, hashlib.sha256).hex()  # one-shot C call: ~1 µs


@dataclass(frozen=True)
class KeyLimits:
    """Per-key limits; 0 means unlimited. Budgets reset at the start of each UTC day or month."""

    rpm: int = 0  # requests per minute
    tpm: int = 0  # tokens per minute (prompt estimate + max_tokens before, reconciled with usage after)
    concurrency: int = 0  # requests in flight at once
    token_budget: int = 0  # tokens per budget period
    cost_budget_usd: float = 0.0  # USD per budget period (from the model's registry prices)
    budget_period: str = "month"
    priority: str = "interactive"  # the highest class its requests get a slot in: interactive, or batch

    def to_json(self) -> dict[str, Any]:
        return {
            "rpm": self.rpm,
            "tpm": self.tpm,
            "concurrency": self.concurrency,
            "token_budget": self.token_budget,
            "cost_budget_usd": self.cost_budget_usd,
            "budget_period": self.budget_period,
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> KeyLimits:
        data = data or {}
        return cls(
            rpm=int(data.get("rpm") or 0),
            tpm=int(data.get("tpm") or 0),
            concurrency=int(data.get("concurrency") or 0),
            token_budget=int(data.get("token_budget") or 0),
            cost_budget_usd=float(data.get("cost_budget_usd") or 0.0),
            budget_period=str(data.get("budget_period") or "month"),
            priority=str(data.get("priority") or "interactive"),
        )

    @property
    def rate_limited(self) -> bool:
        return bool(self.rpm or self.tpm or self.concurrency)

    @property
    def budgeted(self) -> bool:
        return bool(self.token_budget or self.cost_budget_usd)


@dataclass(frozen=True)
class KeyGrant:
    """What one key may do, as held in the gateway's in-memory snapshot (never the secret or its hash)."""

    id: str
    name: str
    scopes: frozenset[str]
    models: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    limits: KeyLimits = field(default_factory=KeyLimits)
    expires_at: float | None = None  # unix seconds
    revoked: bool = False

    @property
    def actor(self) -> str:
        return f"key:{self.name}({self.id})"
