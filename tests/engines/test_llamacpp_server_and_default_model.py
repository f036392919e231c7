from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.engines.llamacpp_server import LlamaServerConfig, ModelFileError, builtin_chat_template, check_gguf
from modelyard.hashing import file_sha256
from modelyard.registry.default_model import DEFAULT_MODEL, ensure_default_model


def test_check_gguf(tmp_path: Path) -> None:
    good = tmp_path / "a.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    check_gguf(good)
    bad = tmp_path / "b.gguf"
    bad.write_bytes(b"\x89PNG")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        check_gguf(bad)
    with pytest.raises(ModelFileError, match="not found"):
        check_gguf(tmp_path / "missing.gguf")


def test_engine_argv_binds_loopback_and_enables_metrics(tmp_path: Path) -> None:
    config = LlamaServerConfig(
        model_path=tmp_path / "m.gguf", alias="m", chat_template_file=builtin_chat_template("gemma"), threads=2
    )
    argv = config.argv(Path("/bin/llama-server"), 4242)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "4242"
    assert "--metrics" in argv
    assert argv[argv.index("--chat-template-file") + 1].endswith("gemma.jinja")
    assert "--embeddings" not in argv


def test_default_model_is_assembled_and_its_verification_recorded(tmp_path: Path) -> None:
    path = ensure_default_model(tmp_path)
    assert path.name == DEFAULT_MODEL.file_name
    assert path.read_bytes()[:4] == b"GGUF"
    marker = path.with_name(path.name + ".verified.json")
    assert DEFAULT_MODEL.sha256 in marker.read_text()
    assert ensure_default_model(tmp_path) == path


def test_corrupted_default_model_is_reassembled(tmp_path: Path) -> None:
    path = ensure_default_model(tmp_path)
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    ensure_default_model(tmp_path)
    assert file_sha256(path) == DEFAULT_MODEL.sha256
    assert path.stat().st_size == size
