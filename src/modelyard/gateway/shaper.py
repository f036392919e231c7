"""The answer side of the adapt stage: an engine's answer mapped back to what the client asked for, in OpenAI's
shapes — whole JSON answers (:meth:`AnswerShaper.json`) and streams, event by event (:meth:`AnswerShaper.events`).

- tool calls the gateway constrained (``gateway/tool_calls.py``) become ``tool_calls`` (in a stream: one
  ``tool_calls`` delta per call once the choice is complete and validated, then ``finish_reason: "tool_calls"``);
- structured output is validated (``gateway/structured.py``) and ``finish_reason`` says when it is not;
- logprobs are reshaped (``gateway/logprobs_shape.py``) and trimmed to what was asked;
- ``echo`` the engine cannot do puts the prompt in front of the text;
- ``n`` choices of an engine that counts one choice's usage get their usage summed (one usage chunk at the end).

Only requests that asked for one of these pay for decoding the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from modelyard.gateway.adapt import Adapter
from modelyard.gateway.logprobs_shape import LegacyLogprobs, chat_logprobs
from modelyard.gateway.structured import finish_reason_for
from modelyard.gateway.tool_calls import check_native_calls, map_answer
from modelyard.routing.capabilities import CONTENT_LIST, EngineCapabilities

_DONE = b"data: [DONE]"

Invalid = Callable[[str], None]  # told the kind of output that did not validate ("tool_calls", "json_schema", …)


class AnswerShaper:
    def __init__(self, adapter: Adapter, caps: EngineCapabilities, on_invalid: Invalid) -> None:
        self._adapter = adapter
        self._caps = caps
        self._on_invalid = on_invalid
        self._constrained = adapter.constrains_tools(caps) and adapter.tools is not None and adapter.tools.active
        self._echo = adapter.gateway_echo(caps)
        legacy = caps.completion_logprobs == CONTENT_LIST
        self._legacy = not adapter.chat and adapter.top_logprobs is not None and legacy
        self._sum_usage = adapter.n > 1 and not caps.n_usage_summed
        # stream state, per choice index
        self._text: dict[int, list[str]] = {}
        self._offsets: dict[int, LegacyLogprobs] = {}
        self._echoed: set[int] = set()
        self._native: dict[int, dict[int, dict[str, Any]]] = {}
        self._usage: dict[str, int] | None = None
        self._template: dict[str, Any] | None = None  # a chunk's envelope (id, model, created, object)

    # -- whole answers --------------------------------------------------------------------------------------------

    def json(self, raw: bytes) -> bytes:
        body = orjson.loads(raw)
        if not isinstance(body, dict):
            return raw
        for choice in body.get("choices") or []:
            if self._adapter.chat:
                self._chat_choice(choice)
            else:
                self._completion_choice(choice, choice.get("text") or "")
        return orjson.dumps(body)

    def _chat_choice(self, choice: dict[str, Any]) -> None:
        message = choice.get("message") or {}
        text = message.get("content") or ""
        reason = choice.get("finish_reason")
        if self._constrained:
            mapped, reason = self._map_tools(text, reason)
            message["content"] = mapped.get("content")
            if mapped.get("tool_calls"):
                message["tool_calls"] = mapped["tool_calls"]
        else:
            reason = self._check_native(message, reason)
            reason = self._check_format(text, reason)
        choice["message"] = message
        choice["finish_reason"] = reason
        self._shape_chat_logprobs(choice)

    def _completion_choice(self, choice: dict[str, Any], text: str) -> None:
        index = int(choice.get("index") or 0)
        if self._echo is not None:
            prompt = self._prompt_for(index)
            choice["text"] = prompt + text
        if self._adapter.top_logprobs is not None:
            start = len(self._prompt_for(index)) if self._echo is not None else 0
            logprobs = choice.get("logprobs")
            if self._legacy:
                logprobs = LegacyLogprobs(start).convert(logprobs)
            choice["logprobs"] = _trim_legacy(logprobs, self._adapter.top_logprobs)

    # -- streams --------------------------------------------------------------------------------------------------

    def events(self, events: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if event.startswith(_DONE):
                out.extend(self._flush())
                out.append(event)
                continue
            if not event.startswith(b"data: "):
                out.append(event)
                continue
            try:
                chunk = orjson.loads(event[6:])
            except orjson.JSONDecodeError:
                out.append(event)
                continue
            if not isinstance(chunk, dict) or "error" in chunk:
                out.append(event)
                continue
            out.extend(self._chunk(chunk))
        return out

    def _chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        if self._template is None:
            self._template = {k: v for k, v in chunk.items() if k not in ("choices", "usage", "timings")}
        usage = chunk.pop("usage", None)
        if usage is not None and self._sum_usage:
            self._add_usage(usage)
            usage = None
        chunk.pop("timings", None)
        choices = chunk.get("choices") or []
        extra: list[bytes] = []
        kept = []
        for choice in choices:
            emitted = self._chat_delta(choice) if self._adapter.chat else self._completion_delta(choice)
            if emitted is None:
                kept.append(choice)
            else:
                extra.extend(emitted)
        if usage is not None:
            chunk["usage"] = usage
        if not choices and usage is None:
            return extra  # a usage chunk that is summed into the final one
        if choices and not kept and usage is None:
            return extra
        chunk["choices"] = kept
        return [_event(chunk), *extra]

    def _chat_delta(self, choice: dict[str, Any]) -> list[bytes] | None:
        """None: keep the (possibly rewritten) choice in its chunk; a list: the events that replace it."""
        index = int(choice.get("index") or 0)
        delta = choice.get("delta") or {}
        reason = choice.get("finish_reason")
        piece = delta.get("content")
        if isinstance(piece, str):
            self._text.setdefault(index, []).append(piece)
        self._shape_chat_logprobs(choice)
        if self._constrained:
            if reason is None:
                if "role" in delta:
                    choice["delta"] = {"role": delta["role"], "content": None}
                    return None
                return []  # held until the call is complete and validated
            return self._tool_call_events(index, reason)
        for call in delta.get("tool_calls") or []:  # an engine's own tool calls arrive in pieces
            calls = self._native.setdefault(index, {})
            whole = calls.setdefault(int(call.get("index") or 0), {"function": {"name": "", "arguments": ""}})
            function = call.get("function") or {}
            whole["function"]["name"] += function.get("name") or ""
            whole["function"]["arguments"] += function.get("arguments") or ""
        if reason is not None:
            text = "".join(self._text.get(index, []))
            message = {"tool_calls": list(self._native.pop(index, {}).values())}
            choice["finish_reason"] = self._check_format(text, self._check_native(message, reason))
        return None

    def _tool_call_events(self, index: int, engine_reason: str) -> list[bytes]:
        text = "".join(self._text.pop(index, []))
        mapped, reason = self._map_tools(text, engine_reason)
        events = []
        if mapped.get("tool_calls"):
            for position, call in enumerate(mapped["tool_calls"]):
                delta = {"tool_calls": [{"index": position, **call}]}
                events.append(self._envelope([{"index": index, "delta": delta, "finish_reason": None}]))
        elif mapped.get("content") is not None:
            delta = {"content": mapped["content"]}
            events.append(self._envelope([{"index": index, "delta": delta, "finish_reason": None}]))
        events.append(self._envelope([{"index": index, "delta": {}, "finish_reason": reason}]))
        return events

    def _completion_delta(self, choice: dict[str, Any]) -> list[bytes] | None:
        index = int(choice.get("index") or 0)
        if self._echo is not None and index not in self._echoed:
            self._echoed.add(index)
            choice["text"] = self._prompt_for(index) + (choice.get("text") or "")
        if self._adapter.top_logprobs is not None and choice.get("logprobs") is not None:
            logprobs = choice["logprobs"]
            if self._legacy:
                if index not in self._offsets:
                    start = len(self._prompt_for(index)) if self._echo is not None else 0
                    self._offsets[index] = LegacyLogprobs(start)
                logprobs = self._offsets[index].convert(logprobs)
            choice["logprobs"] = _trim_legacy(logprobs, self._adapter.top_logprobs)
        return None

    def _flush(self) -> list[bytes]:
        if self._usage is None or self._template is None:
            return []
        chunk = {**self._template, "choices": [], "usage": self._usage}
        self._usage = None
        return [_event(chunk)]

    # -- shared -----------------------------------------------------------------------------------------------------

    def _map_tools(self, text: str, reason: str | None) -> tuple[dict[str, Any], str | None]:
        plan = self._adapter.tools
        assert plan is not None
        mapped = map_answer(text, plan)
        if mapped.problem is not None:
            self._on_invalid("tool_calls")
            return {"content": mapped.content}, "length" if reason == "length" else "invalid_output"
        if mapped.tool_calls:
            return {"content": None, "tool_calls": mapped.tool_calls}, "tool_calls"
        return {"content": mapped.content}, reason

    def _check_native(self, message: dict[str, Any], reason: str | None) -> str | None:
        plan = self._adapter.tools
        if plan is None or not plan.active:
            return reason
        calls = message.get("tool_calls") or []
        problem = check_native_calls(calls, plan) if calls else None
        if problem is None and not calls and plan.choice in ("required", "named"):
            problem = "no tool call"
        if problem is not None:
            self._on_invalid("tool_calls")
            return "length" if reason == "length" else "invalid_output"
        return reason

    def _check_format(self, text: str, reason: str | None) -> str | None:
        fmt = self._adapter.format
        if fmt is None or reason is None or reason == "tool_calls":
            return reason
        problem = fmt.problem(text)
        if problem is not None:
            self._on_invalid(fmt.kind)
        return finish_reason_for(reason, problem)

    def _shape_chat_logprobs(self, choice: dict[str, Any]) -> None:
        top = self._adapter.top_logprobs
        if top is None or choice.get("logprobs") is None:
            return
        shaped = chat_logprobs(choice["logprobs"])
        if isinstance(shaped, dict):
            for entry in shaped.get("content") or []:
                entry["top_logprobs"] = entry["top_logprobs"][:top]
        choice["logprobs"] = shaped

    def _prompt_for(self, index: int) -> str:
        assert self._echo is not None
        return self._echo[min(index // max(1, self._adapter.n), len(self._echo) - 1)]

    def _add_usage(self, usage: dict[str, Any]) -> None:
        if self._usage is None:
            self._usage = {"prompt_tokens": int(usage.get("prompt_tokens") or 0), "completion_tokens": 0}
        self._usage["completion_tokens"] += int(usage.get("completion_tokens") or 0)
        self._usage["total_tokens"] = self._usage["prompt_tokens"] + self._usage["completion_tokens"]

    def _envelope(self, choices: list[dict[str, Any]]) -> bytes:
        return _event({**(self._template or {}), "choices": choices})


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _trim_legacy(logprobs: Any, top: int) -> Any:
    if isinstance(logprobs, dict) and isinstance(logprobs.get("top_logprobs"), list):
        logprobs["top_logprobs"] = [
            dict(list(alternatives.items())[:top]) if isinstance(alternatives, dict) else alternatives
            for alternatives in logprobs["top_logprobs"]
        ]
    return logprobs
