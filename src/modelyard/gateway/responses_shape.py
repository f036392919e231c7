"""The Responses API in terms of chat completions, both ways (pure functions).

A ``POST /v1/responses`` body becomes a chat request — ``input`` (text or items), ``instructions`` as the system
turn, ``tools`` and ``tool_choice`` in chat's form, ``text.format`` as ``response_format``, ``max_output_tokens``
as ``max_tokens`` — preceded by the stored conversation of ``previous_response_id``. The chat answer becomes a
Response object (``output`` items: a ``message`` with ``output_text``, ``function_call`` items), and a chat stream
becomes the typed events (``response.created``, ``response.output_text.delta``, …, ``response.completed``)
through :class:`ResponseEvents`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from modelyard.errors import invalid_value

_PASSED = ("temperature", "top_p", "user", "seed", "stop", "parallel_tool_calls")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def input_messages(value: Any) -> list[dict[str, Any]]:
    """``input`` (a string, or a list of messages and items) as chat messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid_value("input must be a string or a list of items.", "input")
    messages: list[dict[str, Any]] = []
    for position, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid_value("Each input item must be an object.", f"input[{position}]")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise invalid_value(f"Unsupported role {role!r}.", f"input[{position}].role")
            messages.append({"role": role, "content": _text(item.get("content"), f"input[{position}].content")})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or new_id("call"),
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "{}")},
            }
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls"):
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": text})
        else:
            raise invalid_value(f"Input items of type {kind!r} are not supported.", f"input[{position}].type")
    return messages


def _text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
                raise invalid_value("Only text content parts are supported.", param)
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise invalid_value("content must be a string or a list of text parts.", param)


def chat_request(body: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat request a Responses request means, after the stored ``history``."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_value("Missing required parameter: 'model'.", "model")
    if "input" not in body:
        raise invalid_value("Missing required parameter: 'input'.", "input")
    messages = list(history) + input_messages(body["input"])
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages = [{"role": "system", "content": instructions}, *(m for m in messages if m["role"] != "system")]
    chat: dict[str, Any] = {"model": model, "messages": messages, "stream": bool(body.get("stream"))}
    for field in _PASSED:
        if body.get(field) is not None:
            chat[field] = body[field]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    tools = [_chat_tool(t, i) for i, t in enumerate(body.get("tools") or [])]
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt},
        }
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if chat["stream"]:
        chat["stream_options"] = {"include_usage": True}
    return chat


def _chat_tool(tool: Any, position: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise invalid_value("Only function tools are supported.", f"tools[{position}].type")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def output_items(message: dict[str, Any], status: str = "completed") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    text = message.get("content")
    if text:
        items.append(
            {
                "type": "message",
                "id": new_id("msg"),
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name", ""),
                "arguments": function.get("arguments", "{}"),
                "status": "completed",
            }
        )
    return items


def response_object(
    body: dict[str, Any], response_id: str, model: str, output: list[dict[str, Any]], usage: Any, finish: str | None
) -> dict[str, Any]:
    """A Response as the SDKs parse it (``status`` incomplete when cut by ``max_output_tokens``)."""
    incomplete = finish == "length"
    usage = usage if isinstance(usage, dict) else {}
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    text = body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else "completed",
        "model": model,
        "output": output,
        "usage": {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None,
        "instructions": body.get("instructions"),
        "previous_response_id": body.get("previous_response_id"),
        "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "text": text,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "store": body.get("store") is not False,
    }


def from_chat_answer(body: dict[str, Any], response_id: str, answer: dict[str, Any]) -> dict[str, Any]:
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output = output_items(message, "incomplete" if choice.get("finish_reason") == "length" else "completed")
    return response_object(
        body,
        response_id,
        str(answer.get("model", body.get("model"))),
        output,
        answer.get("usage"),
        choice.get("finish_reason"),
    )


def assistant_message(response: dict[str, Any]) -> dict[str, Any]:
    """The chat message a stored response contributes to the conversation."""
    text = "".join(
        part.get("text", "")
        for item in response["output"]
        if item["type"] == "message"
        for part in item.get("content") or []
    )
    calls = [
        {"id": i["call_id"], "type": "function", "function": {"name": i["name"], "arguments": i["arguments"]}}
        for i in response["output"]
        if i["type"] == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


class ResponseEvents:
    """Chat stream chunks in, Responses stream events out (each ``event:`` + ``data:``, numbered)."""

    def __init__(self, body: dict[str, Any], response_id: str) -> None:
        self._body = body
        self._id = response_id
        self._sequence = 0
        self._model = str(body.get("model", ""))
        self._text: list[str] = []
        self._message_id: str | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        self._finish: str | None = None
        self.final: dict[str, Any] | None = None

    def start(self) -> list[bytes]:
        shell = response_object(self._body, self._id, self._model, [], None, None)
        shell["status"] = "in_progress"
        return [self._event("response.created", response=shell), self._event("response.in_progress", response=shell)]

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        self._model = str(chunk.get("model") or self._model)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            piece = delta.get("content")
            if piece:
                if self._message_id is None:
                    out.extend(self._open_message())
                self._text.append(piece)
                out.append(self._event("response.output_text.delta", **self._where(), delta=piece))
            for call in delta.get("tool_calls") or []:
                self._calls.setdefault(int(call.get("index") or 0), {"id": call.get("id"), "name": "", "args": ""})
                entry = self._calls[int(call.get("index") or 0)]
                function = call.get("function") or {}
                entry["id"] = entry["id"] or call.get("id")
                entry["name"] += function.get("name") or ""
                entry["args"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        output: list[dict[str, Any]] = []
        if self._message_id is not None:
            text = "".join(self._text)
            part = {"type": "output_text", "text": text, "annotations": []}
            where = self._where()
            out.append(self._event("response.output_text.done", **where, text=text))
            out.append(self._event("response.content_part.done", **where, part=part))
            item = {
                "type": "message",
                "id": self._message_id,
                "status": "incomplete" if self._finish == "length" else "completed",
                "role": "assistant",
                "content": [part],
            }
            out.append(self._event("response.output_item.done", output_index=0, item=item))
            output.append(item)
        for position in sorted(self._calls):
            call = self._calls[position]
            index = len(output)
            item = {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call["id"] or new_id("call"),
                "name": call["name"],
                "arguments": call["args"],
                "status": "in_progress",
            }
            out.append(self._event("response.output_item.added", output_index=index, item={**item, "arguments": ""}))
            out.append(
                self._event(
                    "response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=call["args"]
                )
            )
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=call["args"],
                )
            )
            item["status"] = "completed"
            out.append(self._event("response.output_item.done", output_index=index, item=item))
            output.append(item)
        self.final = response_object(self._body, self._id, self._model, output, self._usage, self._finish)
        kind = "response.incomplete" if self.final["status"] == "incomplete" else "response.completed"
        out.append(self._event(kind, response=self.final))
        return out

    def _open_message(self) -> list[bytes]:
        self._message_id = new_id("msg")
        item = {"type": "message", "id": self._message_id, "status": "in_progress", "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self._event("response.output_item.added", output_index=0, item=item),
            self._event("response.content_part.added", **self._where(), part=part),
        ]

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._message_id, "output_index": 0, "content_index": 0}

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
