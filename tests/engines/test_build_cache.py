"""The engine cache is trusted only when complete and unmodified."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from modelyard.engines.llamacpp_build import MANIFEST, BuildSpec, ensure_engine, load_cached
from modelyard.engines.llamacpp_source import LLAMA_CPP_SOURCE, SourceError
from modelyard.hashing import file_sha256


def _fake_build(root: Path, spec: BuildSpec) -> None:
    (root / "bin").mkdir(parents=True)
    digests = {}
    for tool in spec.tools:
        path = root / "bin" / tool
        path.write_bytes(f"#!/bin/sh\necho {tool}\n".encode())
        path.chmod(0o755)
        digests[tool] = file_sha256(path)
    (root / MANIFEST).write_text(json.dumps({"key": spec.key(), "version": spec.pin.version, "binaries": digests}))


def test_complete_build_is_reused(tmp_path: Path) -> None:
    spec = BuildSpec()
    _fake_build(tmp_path, spec)
    build = load_cached(tmp_path, spec)
    assert build is not None
    assert build.binary("llama-server") == tmp_path / "bin" / "llama-server"


def test_build_without_manifest_is_partial(tmp_path: Path) -> None:
    spec = BuildSpec()
    _fake_build(tmp_path, spec)
    (tmp_path / MANIFEST).unlink()
    assert load_cached(tmp_path, spec) is None


def test_missing_binary_is_partial(tmp_path: Path) -> None:
    spec = BuildSpec()
    _fake_build(tmp_path, spec)
    (tmp_path / "bin" / "llama-quantize").unlink()
    assert load_cached(tmp_path, spec) is None


def test_truncated_binary_is_corrupt(tmp_path: Path) -> None:
    spec = BuildSpec()
    _fake_build(tmp_path, spec)
    with (tmp_path / "bin" / "llama-server").open("r+b") as handle:
        handle.truncate(3)
    assert load_cached(tmp_path, spec) is None


def test_non_executable_binary_is_rejected(tmp_path: Path) -> None:
    spec = BuildSpec()
    _fake_build(tmp_path, spec)
    os.chmod(tmp_path / "bin" / "llama-server", 0o644)
    assert load_cached(tmp_path, spec) is None


def test_key_changes_with_flags_and_version() -> None:
    base = BuildSpec()
    assert base.key() == BuildSpec().key()
    assert BuildSpec(flags=(*base.flags, "-DGGML_AVX512=OFF")).key() != base.key()
    assert base.key().startswith(f"llama.cpp-{base.pin.version}-")


def test_ensure_engine_reuses_a_valid_cache_without_building(tmp_path: Path) -> None:
    spec = BuildSpec()
    _fake_build(tmp_path / "engines" / spec.key(), spec)
    build = ensure_engine(tmp_path, spec, log=lambda _: None)
    assert build.root == tmp_path / "engines" / spec.key()


def test_corrupt_cache_is_discarded_and_a_tampered_source_is_refused(tmp_path: Path) -> None:
    """A corrupt cache entry is never used: the rebuild starts by fetching the source, whose hash is checked."""
    spec = BuildSpec(pin=replace(LLAMA_CPP_SOURCE, sha256="0" * 64))
    final = tmp_path / "engines" / spec.key()
    _fake_build(final, spec)
    (final / "bin" / "llama-server").write_bytes(b"tampered")
    with pytest.raises(SourceError, match="refusing to build"):
        ensure_engine(tmp_path, spec, log=lambda _: None)
    assert not final.exists()
    assert not list((tmp_path / "sources").glob("*.tar.gz"))
