"""Hugging Face-format directories as registry versions: digest over the files, facts from config.json and the
safetensors headers, the same provenance, and a changed directory refused before load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard.hashing import directory_digest, manifest_digest
from modelyard.registry.errors import InvalidRequest
from modelyard.registry.integrity import ArtifactIntegrityError, IntegrityChecker
from modelyard.registry.references import parse_ref
from modelyard.registry.registration import Declared, describe_artifact, register_file
from modelyard.registry.store import RegistryStore

from registry.hf_dirs import write_hf_dir


def test_the_digest_covers_every_file_in_a_stable_order(tmp_path: Path) -> None:
    first = write_hf_dir(tmp_path / "a")
    second = write_hf_dir(tmp_path / "b")
    digest, files = directory_digest(first)
    assert digest == directory_digest(second)[0]  # same bytes, another place: the same digest
    names = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert list(files) == sorted(files) == names
    assert manifest_digest(files) == digest
    (second / "extra.txt").write_text("x")
    assert directory_digest(second)[0] != digest
    (second / "extra.txt").unlink()
    (second / "tokenizer.json").rename(second / "tokenizer2.json")
    assert directory_digest(second)[0] != digest


def test_facts_come_from_config_and_safetensors_headers(tmp_path: Path) -> None:
    measured = describe_artifact(write_hf_dir(tmp_path / "m", chat_template=True), "tiny")
    assert measured.format == "hf"
    assert measured.architecture == "gemma3_text"
    assert measured.quantization == "bfloat16"
    assert measured.context_length == 32768
    assert measured.parameter_count == 4 * 3 + 3
    assert measured.size_bytes == sum(int(f["size"]) for f in measured.header["files"].values())
    assert measured.header["has_chat_template"] is True
    assert measured.header["architectures"] == ["Gemma3ForCausalLM"]
    assert set(measured.header["files"]["model.safetensors"]) == {"size", "sha256"}


@pytest.mark.parametrize(
    ("remove", "message"), [("config.json", "no config.json"), ("model.safetensors", r"no \*\.safetensors")]
)
def test_a_directory_that_is_not_a_model_is_refused_naming_what_is_missing(
    tmp_path: Path, remove: str, message: str
) -> None:
    root = write_hf_dir(tmp_path / "m")
    (root / remove).unlink()
    with pytest.raises(InvalidRequest, match=message):
        describe_artifact(root, "tiny")


def test_registered_with_parent_and_provenance(
    store: RegistryStore, checker: IntegrityChecker, gguf_file, tmp_path: Path
) -> None:
    base = register_file(store, checker, gguf_file(1), "tiny", Declared(license="apache-2.0"), "alice")
    declared = Declared(parent=parse_ref(base.key), license="apache-2.0", training_data=("corpus-a",))
    version = register_file(store, checker, write_hf_dir(tmp_path / "hf"), "tiny", declared, "alice")
    assert (version.format, version.number, version.parent) == ("hf", 2, base.key)
    assert version.training_data == ("corpus-a",)
    assert version.artifact_path == tmp_path / "hf"
    assert store.get_version("tiny", 2).header["files"]["config.json"]["sha256"]


def test_a_changed_directory_is_refused_and_an_untouched_one_is_cached(tmp_path: Path) -> None:
    root = write_hf_dir(tmp_path / "hf")
    measured = describe_artifact(root, "tiny")
    checker = IntegrityChecker(tmp_path / "memo")
    assert checker.verify(root, measured.sha256, measured.size_bytes).from_cache is False
    assert checker.verify(root, measured.sha256, measured.size_bytes).from_cache is True
    assert checker.known_sha256(root) == measured.sha256
    weights = root / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="modified or corrupted"):
        checker.verify(root, measured.sha256, measured.size_bytes)
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(1, 1))  # restored bytes under a new mtime: rehashed, and accepted
    assert checker.verify(root, measured.sha256, measured.size_bytes).from_cache is False
    (root / "added.json").write_text("{}")
    with pytest.raises(ArtifactIntegrityError, match="bytes, the registry recorded"):
        checker.verify(root, measured.sha256, measured.size_bytes)
