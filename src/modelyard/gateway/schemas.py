"""What a valid OpenAI request looks like, checked at the edge.

Only the fields the gateway relies on or that engines choke on are typed; unknown fields pass through untouched
so engine-specific parameters (``top_k``, ``min_p``, ``grammar``, ...) keep working. Validation errors are turned
into OpenAI's shape with ``param`` naming the offending field, e.g. ``messages[0].role`` (``jsonbody.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# Bounds on what reaches an engine: llama-server keeps counts in 32-bit ints (a larger max_tokens wraps to a
# negative number there), and a huge logit_bias, stop list or n_probs stalls its sampler for every slot. The
# context bounds max_tokens further (security/request_limits.py).
TokenCount = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]  # echoed in errors: bounded
MAX_LOGIT_BIAS = 300  # entries (OpenAI's own limit)
MAX_STOP = 16  # stop sequences (OpenAI allows 4; llama-server more)
StopText = Annotated[str, msgspec.Meta(max_length=1000)]
LogitBias = Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_LOGIT_BIAS)]
LogitBiasPairs = Annotated[list[Any], msgspec.Meta(max_length=MAX_LOGIT_BIAS)]  # llama-server's [[token, bias]]
TopLogprobs = Annotated[int, msgspec.Meta(ge=0, le=20)]


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str


class ToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class ContentPart(msgspec.Struct):
    """One part of a message's content: only its type and text are checked (images, audio and files pass on)."""

    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls, sent back in the next request
    tool_call_id: str | None = None  # a tool message answers this call


class FunctionSpec(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct):
    function: FunctionSpec
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    function: NamedFunction
    type: Literal["function"] = "function"


class JsonSchemaFormat(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class _SamplingFields(msgspec.Struct):
    model: ModelName
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: TokenCount | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None  # the gateway's --max-n caps it further
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: int | None = None
    stop: StopText | Annotated[list[StopText], msgspec.Meta(max_length=MAX_STOP)] | None = None
    user: str | None = None
    logit_bias: LogitBias | LogitBiasPairs | None = None
    n_probs: TopLogprobs | None = None  # llama-server's own name for top_logprobs


class ChatCompletionRequest(_SamplingFields, kw_only=True):  # kw_only: a required field after inherited defaults
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    max_completion_tokens: TokenCount | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None

    @property
    def adapted(self) -> bool:
        """Whether anything beyond plain generation is asked for (the common path skips the adapt stage).
        Written as plain checks and a loop: this runs for every chat request."""
        if self.tools or self.response_format is not None or self.logprobs or self.top_logprobs is not None:
            return True
        if self.n is not None and self.n > 1:
            return True
        for message in self.messages:  # noqa: SIM110 - a loop, not a generator: measurably faster here
            if message.tool_calls is not None or message.role == "tool":
                return True
        return False


class CompletionRequest(_SamplingFields, kw_only=True):
    prompt: str | list[str | int | list[int]]
    logprobs: TopLogprobs | None = None
    echo: bool | None = None

    @property
    def adapted(self) -> bool:
        return self.logprobs is not None or bool(self.echo) or (self.n or 1) > 1


class EmbeddingRequest(msgspec.Struct):
    model: ModelName
    input: str | list[str | int | list[int]]
    encoding_format: Literal["float", "base64"] | None = None
