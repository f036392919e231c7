"""Tool calls for models whose chat template has no tool-call format (the default Gemma base model among them).

The engine cannot parse a tool call it never asked the model for, so the gateway asks for one in a form it can
enforce: the tools are described in a system turn, and the answer is constrained (the engine's JSON-schema
sampler) to ``{"tool_calls": [{"name": …, "arguments": {…}}]}`` — with ``"auto"`` also ``{"content": "…"}`` for a
plain reply. The answer is then mapped back to OpenAI's ``tool_calls`` (ids, JSON-string arguments,
``finish_reason: "tool_calls"``) after the arguments validate against the function's own schema.

Earlier turns travel the same way: an assistant message with ``tool_calls`` becomes that JSON as its text, and a
``tool`` message a user turn carrying the result, so a conversation round-trips through any template.
Pure functions only; ``gateway/shaper.py`` applies them to answers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from modelyard.errors import invalid_value

ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class ToolPlan:
    """What a request's ``tools`` / ``tool_choice`` mean for one answer."""

    functions: dict[str, dict[str, Any]]  # name → parameters schema, the functions the model may call now
    all_functions: dict[str, dict[str, Any]]  # every declared function (validation of native calls)
    choice: str  # "none" | "auto" | "required" | "named"
    parallel: bool
    max_calls: int

    @property
    def active(self) -> bool:
        return self.choice != "none" and bool(self.functions)


def plan_tools(request: Any, max_calls: int) -> ToolPlan | None:
    """None when the request declares no tools. A named choice must name a declared function."""
    tools = request.tools or []
    if not tools:
        if request.tool_choice not in (None, "none", "auto"):
            raise invalid_value("tool_choice needs tools to choose from.", "tool_choice")
        return None
    declared = {t.function.name: t.function.parameters or ANY_OBJECT for t in tools}
    for name, schema in declared.items():
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problem = f"The parameters of tool '{name}' are not a valid JSON schema: {exc.message}"
            raise invalid_value(problem, "tools") from None
    choice = request.tool_choice
    if choice is None:
        choice = "auto"
    if isinstance(choice, str):
        functions = declared if choice != "none" else {}
        kind = choice
    else:
        name = choice.function.name
        if name not in declared:
            raise invalid_value(f"tool_choice names '{name}', which is not among the tools.", "tool_choice")
        functions, kind = {name: declared[name]}, "named"
    parallel = request.parallel_tool_calls is not False
    return ToolPlan(functions, declared, kind, parallel, max_calls if parallel else 1)


def constraint_schema(plan: ToolPlan) -> dict[str, Any]:
    """The JSON schema the engine enforces on the answer."""
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, parameters in plan.functions.items()
    ]
    call = calls[0] if len(calls) == 1 else {"anyOf": calls}
    with_calls = {
        "type": "object",
        "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1, "maxItems": plan.max_calls}},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    if plan.choice != "auto":
        return with_calls
    reply = {
        "type": "object",
        "properties": {"content": {"type": "string"}},
        "required": ["content"],
        "additionalProperties": False,
    }
    return {"anyOf": [with_calls, reply]}


def tools_prompt(request: Any, plan: ToolPlan) -> str:
    described = [
        {"name": t.function.name, "description": t.function.description or "", "parameters": plan.all_functions[n]}
        for t in request.tools
        if (n := t.function.name) in plan.functions
    ]
    if plan.choice == "auto":
        how = (
            'To call functions answer {"tool_calls": [{"name": ..., "arguments": {...}}]}; '
            'to answer in words answer {"content": "..."}.'
        )
    else:
        how = 'Answer only with {"tool_calls": [{"name": ..., "arguments": {...}}]}.'
    return f"You can call these functions:\n{orjson.dumps(described).decode()}\n{how}"


def rewrite_messages(messages: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """Earlier tool calls and results as plain turns any template renders; ``system`` (the tools' description)
    joins the first system message or becomes one."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            calls = [
                {"name": c["function"]["name"], "arguments": _loads_or_text(c["function"].get("arguments", "{}"))}
                for c in message["tool_calls"]
            ]
            out.append({"role": "assistant", "content": orjson.dumps({"tool_calls": calls}).decode()})
        elif role == "tool":
            text = _text_of(message.get("content"))
            call = message.get("tool_call_id") or ""
            out.append({"role": "user", "content": f"Result of tool call {call}: {text}"})
        elif message.get("content") is None:
            out.append({**message, "content": ""})
        else:
            out.append(message)
    if system is not None:
        if out and out[0].get("role") in ("system", "developer"):
            out[0] = {**out[0], "content": f"{_text_of(out[0].get('content'))}\n\n{system}"}
        else:
            out.insert(0, {"role": "system", "content": system})
    return out


@dataclass(frozen=True)
class MappedAnswer:
    """One choice's answer after mapping: either tool calls, a text reply, or why it is neither."""

    tool_calls: list[dict[str, Any]] | None = None
    content: str | None = None
    problem: str | None = None  # why the answer could not be used (then content is the raw text)


def map_answer(text: str, plan: ToolPlan) -> MappedAnswer:
    """The constrained answer's text to OpenAI tool calls (arguments validated against each function)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return MappedAnswer(content=text, problem=f"the answer is not JSON ({exc})")
    if isinstance(value, dict) and plan.choice == "auto" and isinstance(value.get("content"), str):
        return MappedAnswer(content=value["content"])
    calls = value.get("tool_calls") if isinstance(value, dict) else None
    if not isinstance(calls, list) or not calls:
        return MappedAnswer(content=text, problem="the answer holds no tool call")
    mapped, seen = [], set()
    for call in calls:
        name = call.get("name") if isinstance(call, dict) else None
        problem = check_call(name, call.get("arguments") if isinstance(call, dict) else None, plan.functions)
        if problem:
            return MappedAnswer(content=text, problem=problem)
        identity = orjson.dumps(call, option=orjson.OPT_SORT_KEYS)
        if identity not in seen:  # small models repeat a call verbatim; the same call twice is never wanted
            seen.add(identity)
            mapped.append(openai_call(str(name), call["arguments"]))
    return MappedAnswer(tool_calls=mapped)


def check_call(name: object, arguments: object, functions: dict[str, dict[str, Any]]) -> str | None:
    """Why a call does not fit its function, or None."""
    if not isinstance(name, str) or name not in functions:
        return f"the model called an unknown function {name!r}"
    error = next(iter(Draft202012Validator(functions[name]).iter_errors(arguments)), None)
    if error is not None:
        return f"the arguments of {name} do not validate: {error.message}"
    return None


def check_native_calls(calls: list[dict[str, Any]], plan: ToolPlan) -> str | None:
    """Tool calls an engine parsed itself, checked the same way (arguments are a JSON string there)."""
    for call in calls:
        function = call.get("function") or {}
        arguments = _loads_or_text(function.get("arguments") or "{}")
        problem = check_call(function.get("name"), arguments, plan.all_functions)
        if problem:
            return problem
    return None


def openai_call(name: str, arguments: Any) -> dict[str, Any]:
    return {
        "id": f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
    }


def _loads_or_text(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
