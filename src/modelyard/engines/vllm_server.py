"""How modelyard runs ``vllm serve``: the flags that make it an engine behind the gateway, like llama-server.

Bound to loopback on a private port; the gateway does auth, limits and routing. The served model name is the
version key (``gemma-3-270m:2``), as llama-server's ``--alias`` is. Environment variables that vLLM reads instead
of flags (the CPU KV-cache size, thread binding, OpenMP runtime, no telemetry, no hub) are set through
``env`` in front of the command, so the supervisor launches it like any other engine and its process group (the
API server and its engine-core child) is stopped as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelyard.engines.vllm_settings import VllmSettings

#: the ranks vLLM's --max-lora-rank accepts
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class VllmLora:
    """``--enable-lora`` with room for ``max_loras`` adapters of rank up to ``max_rank`` at once, ``modules``
    (served name, PEFT directory) loaded at launch, and run-time loading allowed
    (``VLLM_ALLOW_RUNTIME_LORA_UPDATING``: ``POST /v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``)."""

    modules: tuple[tuple[str, Path], ...] = ()
    max_loras: int = 4
    max_rank: int = 16

    @classmethod
    def fitting(cls, modules: tuple[tuple[str, Path], ...], ranks: tuple[int, ...], max_loras: int = 4) -> VllmLora:
        need = max((16, *ranks))
        rank = next((r for r in LORA_RANKS if r >= need), LORA_RANKS[-1])
        return cls(modules, max(max_loras, len(modules)), rank)

    def argv(self) -> list[str]:
        args = ["--enable-lora", "--max-loras", str(self.max_loras), "--max-lora-rank", str(self.max_rank)]
        if self.modules:
            args += ["--lora-modules", *(f"{name}={path}" for name, path in self.modules)]
        return args


@dataclass(frozen=True)
class VllmServerConfig:
    model_dir: Path
    served_name: str
    settings: VllmSettings
    chat_template_file: Path | None = None
    preload: tuple[Path, ...] = ()  # LD_PRELOAD (Intel OpenMP on CPU)
    extra_args: tuple[str, ...] = ()
    # An encoder (sentence-embedding) model: vLLM's pooling runner serves /v1/embeddings, pooled as its
    # sentence-transformers files say (modules.json), and nothing generates.
    pooling: bool = False
    # The model's own context when it is shorter than the setting: vLLM refuses a longer --max-model-len.
    context_length: int | None = None
    lora: VllmLora | None = None  # LoRA serving on (adapters loaded at launch; more loaded at run time)

    def environment(self) -> dict[str, str]:
        env = {
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_LOGGING_LEVEL": "INFO",
        }
        if self.lora is not None:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.settings.vllm_device == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.settings.vllm_cpu_kv_cache_gib)
            # Binding OpenMP threads to cores assumes the machine is ours alone; beside others, the OS places them.
            env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
            if self.preload:
                env["LD_PRELOAD"] = ":".join(str(path) for path in self.preload)
            if self.settings.vllm_cpu_threads is not None:
                env["OMP_NUM_THREADS"] = str(self.settings.vllm_cpu_threads)
        return env

    def argv(self, vllm: Path, port: int) -> list[str]:
        s = self.settings
        env = [f"{name}={value}" for name, value in sorted(self.environment().items())]
        args = [
            "env",
            *env,
            str(vllm),
            "serve",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dtype",
            s.vllm_dtype,
            "--max-num-seqs",
            str(s.vllm_max_num_seqs),
            "--disable-uvicorn-access-log",
            # Compact JSON under response_format and constrained tool calls: with whitespace allowed between
            # fields, a small model pads a finished object with newlines until max_tokens (seen with Gemma 270M).
            "--structured-outputs-config",
            '{"backend": "xgrammar", "disable_any_whitespace": true}',
        ]
        if self.pooling:
            # An encoder attends both ways, so a cached prefix says nothing about the rest: no prefix caching. Its
            # length is vLLM's to derive: a sentence-transformers model caps it below its positions
            # (all-MiniLM-L6-v2: 256 of 512), and vLLM refuses a longer --max-model-len.
            args += ["--runner", "pooling", "--no-enable-prefix-caching"]
        else:
            args += ["--max-model-len", str(min(s.vllm_max_model_len, self.context_length or s.vllm_max_model_len))]
            args.append("--enable-prefix-caching" if s.vllm_prefix_caching else "--no-enable-prefix-caching")
        if s.vllm_enforce_eager:
            args.append("--enforce-eager")
        if s.vllm_device == "gpu":
            args += [
                "--gpu-memory-utilization",
                str(s.vllm_gpu_memory_utilization),
                "--tensor-parallel-size",
                str(s.vllm_tensor_parallel_size),
            ]
        if self.chat_template_file is not None:
            args += ["--chat-template", str(self.chat_template_file)]
        if s.vllm_tool_call_parser:
            args += ["--enable-auto-tool-choice", "--tool-call-parser", s.vllm_tool_call_parser]
        if self.lora is not None:
            args += self.lora.argv()
        return [*args, *self.extra_args]
