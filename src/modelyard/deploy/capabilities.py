"""Each engine kind modelyard launches, described as :class:`~modelyard.routing.capabilities.EngineCapabilities`.

llama.cpp (this build of ``llama-server``, checked against its source and by the tests in
``tests/conformance``):

- ``response_format`` ``json_object`` / ``json_schema`` → a grammar the sampler enforces (yes);
- tools: parsed into ``tool_calls`` only with ``--jinja`` and a template that knows tools (``/props`` reports
  ``chat_template_caps.supports_tools``); the default Gemma base model's template does not, so the gateway
  constrains tool calls itself with a JSON schema;
- logprobs: ``n_probs`` under the hood, answered in its chat-style ``content`` list for completions too (the
  gateway rewrites that into OpenAI's legacy arrays), entries carry an extra ``id``;
- ``echo``: refused by ``/v1/completions`` ("Only no echo is supported") and no prompt logprobs exist, so echo is
  a 400 naming the limit;
- ``n``: native up to its ``--parallel`` slots (``n_cmpl``), but its usage counts one choice only.

vLLM (``vllm serve``, OpenAI's shapes): ``response_format`` through its structured-output backend (xgrammar /
guidance); tool calls parsed natively only with ``--tool-call-parser`` (otherwise constrained by the gateway, as
for llama.cpp); logprobs up to its ``--max-logprobs`` (20 by default) in OpenAI's legacy arrays for completions;
``echo`` with the prompt's own logprobs (and ``prompt_logprobs``); ``n`` native, usage summed over the choices.
"""

from __future__ import annotations

from modelyard.registry.records import VersionRecord
from modelyard.routing.capabilities import CONTENT_LIST, LEGACY, OPENAI_COMPATIBLE, EngineCapabilities

# GGUF architectures that are encoders: served in embedding mode, never for chat or completions.
EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "modern-bert", "neo-bert"})


def is_embedding_model(version: VersionRecord) -> bool:
    return version.architecture in EMBEDDING_ARCHITECTURES


def template_knows_tools(version: VersionRecord) -> bool:
    """Whether the GGUF's own chat template has a tool-call format (recorded at registration)."""
    return bool(version.has_chat_template and version.header.get("template_knows_tools"))


def llama_cpp(parallel: int, template_knows_tools: bool) -> EngineCapabilities:
    return EngineCapabilities(
        kind="llama.cpp",
        json_schema=True,
        native_tools=template_knows_tools,
        logprobs=True,
        max_top_logprobs=20,
        completion_logprobs=CONTENT_LIST,
        echo=False,
        max_n=parallel,
        n_usage_summed=False,
        extra_chat_fields=("id",),
    )


def vllm(native_tools: bool) -> EngineCapabilities:
    return EngineCapabilities(
        kind="vllm",
        json_schema=True,
        native_tools=native_tools,
        logprobs=True,
        max_top_logprobs=20,
        completion_logprobs=LEGACY,
        echo=True,
        max_n=128,
        n_usage_summed=True,
    )


def remote(engine: str, slots: int) -> EngineCapabilities:
    """A remote target's capabilities, from the engine kind its deployments entry declares."""
    if engine == "llama.cpp":
        return llama_cpp(slots, template_knows_tools=False)
    if engine == "vllm":
        return vllm(native_tools=False)
    return OPENAI_COMPATIBLE
