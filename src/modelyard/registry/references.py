"""How people and clients name things in the registry: ``name``, ``name@alias`` and ``name:version``.

Pure parsing and validation, shared by the CLI, the admin API and the gateway's model resolution, so that all
three accept exactly the same spellings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.registry.errors import InvalidRequest

PRODUCTION = "production"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.match(name):
        raise InvalidRequest(
            f"Invalid model name {name!r}: use 1-128 letters, digits, '.', '_', '-' or '/', starting with a letter "
            "or digit ('@' and ':' are reserved for aliases and versions).",
            param="name",
        )
    return name


def check_alias_name(alias: str) -> str:
    if not _ALIAS_NAME.match(alias):
        raise InvalidRequest(
            f"Invalid alias {alias!r}: use 1-64 lower-case letters, digits, '_' or '-', starting with a letter.",
            param="alias",
        )
    return alias


MAX_VERSION = 2**63 - 1  # the database's integer: a larger number cannot name a stored version


def parse_version_number(text: str | int) -> int:
    shown = str(text)[:40]
    try:
        number = int(str(text).removeprefix("v")) if len(str(text)) <= 40 else 0
    except ValueError:
        raise InvalidRequest(f"Invalid version {shown!r}: versions are positive integers.", param="version") from None
    if not 1 <= number <= MAX_VERSION:
        raise InvalidRequest(f"Invalid version {shown!r}: versions are positive integers below 2^63.", param="version")
    return number


def parse_ref(text: str) -> ModelRef:
    """``gemma`` → production (or only) version, ``gemma@canary`` → an alias, ``gemma:2`` → a version."""
    if "@" in text:
        name, alias = text.split("@", 1)
        return ModelRef(check_model_name(name), alias=check_alias_name(alias))
    if ":" in text:
        name, version = text.rsplit(":", 1)
        return ModelRef(check_model_name(name), version=parse_version_number(version))
    return ModelRef(check_model_name(text))
