"""Request bodies of the admin API. Unknown fields are refused: a typo in an admin call must not be ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Version = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]  # the database's integer


class RegisterVersion(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Register a GGUF file on the gateway host as the next version of ``name``."""

    path: NonEmpty
    name: NonEmpty
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] | None = None
    license: str = ""
    base_model: str = ""
    parent: str | None = None  # "name:version" or "name@alias"
    training_data: list[str] = []
    fine_tuning_data: list[str] = []
    lineage_notes: str = ""
    alias: str | None = None


class UpdateModel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Replace a model's description, owner or whole tag set; omitted fields stay as they are."""

    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] | None = None


class MoveAlias(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    version: Version
    expected_version: Version | None = None  # compare-and-set: refuse with 409 if the alias moved meanwhile
    force: bool = False  # move past failed promotion gates; recorded in the alias_moved event
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""  # why it was forced (kept in the event)


class Promote(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    version: Version
    alias: str = "production"
    expected_version: Version | None = None
    force: bool = False
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Rollback(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    alias: str = "production"


class CardQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    format: Literal["json", "md"] = "json"
    version: Version | None = None
    alias: str | None = None


NonNegative = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # stored as the database's integer


class KeyLimitsBody(msgspec.Struct, forbid_unknown_fields=True):
    rpm: NonNegative = 0
    tpm: NonNegative = 0
    concurrency: NonNegative = 0
    token_budget: NonNegative = 0
    cost_budget_usd: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    budget_period: Literal["day", "month"] = "month"
    priority: Literal["interactive", "batch"] = "interactive"  # the highest class its requests are queued in


class CreateKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"\S")]
    scopes: Annotated[list[Literal["inference", "admin", "read"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["inference"]
    )
    models: list[Annotated[str, msgspec.Meta(min_length=1, max_length=256)]] = []
    regions: list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] = []
    limits: KeyLimitsBody = msgspec.field(default_factory=KeyLimitsBody)
    expires_at: datetime | None = None
    expires_in_s: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86400)] | None = None


class ExpireKey(msgspec.Struct, forbid_unknown_fields=True):
    expires_at: datetime | None = None
    expires_in_s: Annotated[float, msgspec.Meta(ge=0, le=10 * 365 * 86400)] | None = None
