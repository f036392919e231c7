"""What an engine kind can do with the OpenAI parameters beyond plain text generation.

The gateway adapts a request to its target (``gateway/adapt.py``) from this description alone, so adding an engine
kind means describing it here, not teaching the gateway about it. A parameter the kind cannot honour is refused
with a 400 that names the engine's limit (``errors.engine_limit``) — never silently dropped.

``deploy/capabilities.py`` fills it in per kind (llama.cpp today; vLLM declares its own); remote
OpenAI-compatible upstreams get :data:`OPENAI_COMPATIBLE`, which passes parameters through and still validates
what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

# How an engine reports completions logprobs: OpenAI's legacy arrays (tokens / token_logprobs / top_logprobs /
# text_offset), or llama.cpp's chat-style ``{"content": [{token, logprob, bytes, top_logprobs}]}``.
LEGACY = "openai-legacy"
CONTENT_LIST = "content-list"


@dataclass(frozen=True)
class EngineCapabilities:
    kind: str  # "llama.cpp", "vllm", "openai-compatible": named in errors and docs
    json_schema: bool = True  # response_format json_schema / json_object are enforced by the engine's sampler
    native_tools: bool = True  # the model's template has a tool-call format the engine parses into tool_calls
    logprobs: bool = True  # chat logprobs / top_logprobs and completions logprobs
    max_top_logprobs: int = 20
    completion_logprobs: str = LEGACY  # the shape the engine answers completions logprobs in
    echo: bool = True  # completions echo, with the prompt's own token logprobs when logprobs is set
    max_n: int = 128  # choices one engine call can produce (n); above it the gateway fans out
    n_usage_summed: bool = True  # whether the engine's usage already counts every choice
    extra_chat_fields: tuple[str, ...] = ()  # fields the engine adds to logprob entries that OpenAI does not have


OPENAI_COMPATIBLE = EngineCapabilities("openai-compatible")
