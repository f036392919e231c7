"""The adapt stage: a request that asks for more than plain generation — tools, ``response_format``, logprobs,
``n`` > 1, ``echo`` — rewritten for the engine kind of its target, with the plan for mapping the answer back.

Plain requests never get here (``Parsed.adapted`` is None: no extra work on the common path). For the others,
:class:`Adapter` holds what the client asked for, refuses what the primary target's engine kind cannot do
(``routing/capabilities.py``: a 400 naming the engine's limit, never a silently wrong answer), and gives, per
target, the payload to send (:meth:`Adapter.payload_for`), how many engine calls the answer needs
(:meth:`Adapter.parts`, for ``n`` beyond what the engine does itself) and the shaper of the answer
(``gateway/shaper.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelyard.errors import engine_limit, invalid_value, n_over_cap
from modelyard.gateway.parse import Parsed
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.structured import OutputFormat, output_format
from modelyard.gateway.tool_calls import ToolPlan, constraint_schema, plan_tools, rewrite_messages, tools_prompt
from modelyard.routing.capabilities import EngineCapabilities

_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")


@dataclass(frozen=True)
class Adapter:
    chat: bool
    request: Any  # the validated ChatCompletionRequest / CompletionRequest
    tools: ToolPlan | None
    format: OutputFormat | None
    n: int
    stream: bool
    top_logprobs: int | None  # how many alternatives the client asked for (None: no logprobs)
    echo: bool

    @classmethod
    def of(cls, parsed: Parsed, settings: GatewaySettings) -> Adapter | None:
        request = parsed.adapted
        if request is None:
            return None
        n = request.n or 1
        if n > settings.max_n:
            raise n_over_cap(n, settings.max_n)
        chat = hasattr(request, "messages")
        if chat:
            tools = plan_tools(request, settings.max_tool_calls)
            fmt = output_format(request.response_format)
            if request.top_logprobs is not None and not request.logprobs:
                raise invalid_value("top_logprobs needs logprobs set to true.", "top_logprobs")
            top = (request.top_logprobs or 0) if request.logprobs else None
            echo = False
        else:
            tools, fmt, top, echo = None, None, request.logprobs, bool(request.echo)
        return cls(chat, request, tools, fmt, n, parsed.stream, top, echo)

    # -- what the engine can do -----------------------------------------------------------------------------------

    def constrains_tools(self, caps: EngineCapabilities) -> bool:
        return self.tools is not None and not caps.native_tools

    def check(self, caps: EngineCapabilities) -> None:
        """Refuse, before anything is sent, what this engine kind cannot honour."""
        if (self.format is not None or (self.constrains_tools(caps) and self.tools and self.tools.active)) and (
            not caps.json_schema
        ):
            raise engine_limit(caps.kind, "constrain output to a JSON schema", "response_format")
        if self.top_logprobs is not None:
            if not caps.logprobs:
                raise engine_limit(caps.kind, "return logprobs", "logprobs")
            if self.top_logprobs > caps.max_top_logprobs:
                param = "top_logprobs" if self.chat else "logprobs"
                raise engine_limit(caps.kind, f"return more than {caps.max_top_logprobs} alternatives", param)
        if self.echo and not caps.echo:
            if self.top_logprobs is not None:
                raise engine_limit(caps.kind, "compute the prompt's token logprobs (echo with logprobs)", "echo")
            if not _text_prompts(self.request.prompt):
                raise engine_limit(caps.kind, "echo a prompt given as token ids", "echo")
        if self.parts(caps) > 1:
            if self.stream:
                raise engine_limit(caps.kind, f"stream more than {caps.max_n} choices (n)", "n")
            if not self.chat and len(_prompts(self.request.prompt)) > 1:
                raise engine_limit(caps.kind, f"produce n > {caps.max_n} choices for several prompts", "n")

    def parts(self, caps: EngineCapabilities) -> int:
        """Engine calls needed for ``n`` choices: one when the engine produces them all with the usage counted,
        else a fan-out (llama.cpp counts one choice's usage, so its whole answers fan out one choice a call)."""
        if self.n == 1:
            return 1
        per_call = caps.max_n if (caps.n_usage_summed or self.stream) else 1
        return math.ceil(self.n / max(1, per_call))

    # -- what is sent ---------------------------------------------------------------------------------------------

    def payload_for(self, payload: dict[str, Any], caps: EngineCapabilities, n: int | None = None) -> dict[str, Any]:
        out = dict(payload)
        if n is not None:
            out["n"] = n
        if self.chat:
            self._chat_payload(out, caps)
        else:
            self._completion_payload(out, caps)
        return out

    def _chat_payload(self, out: dict[str, Any], caps: EngineCapabilities) -> None:
        if self.top_logprobs is not None:
            out["top_logprobs"] = max(1, self.top_logprobs)  # the chosen token's logprob comes with one
        if caps.native_tools:
            return
        plan = self.tools
        for field in _TOOL_FIELDS:
            out.pop(field, None)
        system = tools_prompt(self.request, plan) if plan is not None and plan.active else None
        out["messages"] = rewrite_messages(out["messages"], system)
        if plan is not None and plan.active:
            schema = constraint_schema(plan)
            out["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "tool_calls", "schema": schema, "strict": True},
            }

    def _completion_payload(self, out: dict[str, Any], caps: EngineCapabilities) -> None:
        if self.top_logprobs is not None:
            out["logprobs"] = max(1, self.top_logprobs)
        if self.echo and not caps.echo:
            out.pop("echo", None)  # the gateway puts the prompt in front of the text itself

    def gateway_echo(self, caps: EngineCapabilities) -> list[str] | None:
        """The prompts the gateway must echo itself (the engine cannot), or None."""
        return _text_prompts(self.request.prompt) if self.echo and not caps.echo else None


def _prompts(prompt: Any) -> list[Any]:
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(p, int) for p in prompt):
        return [prompt]
    return list(prompt)


def _text_prompts(prompt: Any) -> list[str] | None:
    prompts = _prompts(prompt)
    return prompts if all(isinstance(p, str) for p in prompts) else None
