"""GGUF header facts and artifact integrity, on real files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import gguf
import pytest

from modelyard.registry.gguf_header import GGUFHeaderError, read_gguf_header
from modelyard.registry.integrity import ArtifactIntegrityError, IntegrityChecker

GGUF = Callable[..., Path]


def test_header_matches_the_gguf_packages_own_reader(gguf_file: GGUF) -> None:
    path = gguf_file(3)
    header = read_gguf_header(path)
    reference = gguf.GGUFReader(path)
    assert header.parameter_count == sum(int(t.n_elements) for t in reference.tensors)
    assert header.tensor_count == len(reference.tensors)
    for key in ("general.architecture", "general.name", "general.license", "llama.context_length"):
        assert header.metadata[key] == reference.fields[key].contents()
    assert header.metadata["general.tags"] == ["test", "tiny"]
    assert header.array_lengths == {"tokenizer.ggml.tokens": 100}  # long arrays are measured, not kept
    assert (header.architecture, header.quantization, header.context_length) == ("llama", "ALL_F32", 256)
    assert header.has_chat_template is False


def test_the_default_model_header(default_model_path: Path) -> None:
    header = read_gguf_header(default_model_path)
    assert (header.architecture, header.quantization, header.parameter_count) == ("gemma3", "Q4_K_M", 268_098_176)
    assert header.context_length == 32768


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 a zip file", r"not a GGUF file: it starts with b'PK\\x03\\x04'"),
        (b"", "empty file"),
        (b"GGUF\x03\x00\x00\x00\x05", "truncated or corrupt"),
        (b"GGUF\x09\x00\x00\x00" + b"\x00" * 16, "unsupported GGUF version 9"),
    ],
)
def test_files_that_are_not_gguf_are_named_for_what_they_are(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFHeaderError, match=message):
        read_gguf_header(path)


def test_integrity_check_is_cached_by_size_and_mtime_and_catches_one_flipped_byte(
    tmp_path: Path, gguf_file: GGUF
) -> None:
    from modelyard.hashing import file_sha256

    path = gguf_file(1)
    sha, size = file_sha256(path), path.stat().st_size
    checker = IntegrityChecker(tmp_path / "memo")
    assert checker.verify(path, sha, size).from_cache is False
    assert checker.verify(path, sha, size).from_cache is True
    assert checker.known_sha256(path) == sha

    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a write always moves mtime
    with pytest.raises(ArtifactIntegrityError, match=f"has sha256 .* the registry recorded {sha}"):
        checker.verify(path, sha, size)
    with pytest.raises(ArtifactIntegrityError, match="has sha256"):
        checker.verify(path, sha, size)  # the failure is not cached as a success
    assert checker.known_sha256(path) is None


def test_integrity_check_reports_missing_and_resized_files(tmp_path: Path, gguf_file: GGUF) -> None:
    checker = IntegrityChecker(tmp_path / "memo")
    with pytest.raises(ArtifactIntegrityError, match="is missing"):
        checker.verify(tmp_path / "gone.gguf", "0" * 64, 10)
    path = gguf_file(1)
    with pytest.raises(ArtifactIntegrityError, match="the registry recorded 10 bytes"):
        checker.verify(path, "0" * 64, 10)
