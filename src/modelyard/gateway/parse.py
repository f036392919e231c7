"""Stage 1, parse: read the body (bounded), decode it as a JSON object and validate it against the endpoint's schema.

The payload stays a dict (unknown fields pass through to the engine untouched); the validated struct is only
read for the fields the gateway relies on. The client's bytes are kept so they can be forwarded as they are when
nothing needs to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from modelyard.asgi import Request, read_body
from modelyard.gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.jsonbody import decode_object, validate


@dataclass(frozen=True)
class InferenceKind:
    """One inference endpoint: its name in metrics and logs, the engine path it maps to, its request schema."""

    name: str
    upstream_path: str
    schema: type[msgspec.Struct]
    streams: bool


CHAT = InferenceKind("chat", "/v1/chat/completions", ChatCompletionRequest, streams=True)
COMPLETIONS = InferenceKind("completions", "/v1/completions", CompletionRequest, streams=True)
EMBEDDINGS = InferenceKind("embeddings", "/v1/embeddings", EmbeddingRequest, streams=False)
# The Responses API and batch lines run the chat path under their own endpoint name (metrics, request log).
RESPONSES = InferenceKind("responses", "/v1/chat/completions", ChatCompletionRequest, streams=True)
BATCH_CHAT = InferenceKind("batch", "/v1/chat/completions", ChatCompletionRequest, streams=True)
BATCH_COMPLETIONS = InferenceKind("batch", "/v1/completions", CompletionRequest, streams=True)
BATCH_EMBEDDINGS = InferenceKind("batch", "/v1/embeddings", EmbeddingRequest, streams=False)


@dataclass(slots=True)
class Parsed:
    kind: InferenceKind
    body: bytes  # the client's bytes
    payload: dict[str, Any]  # the decoded body; redaction and stream options change it in place
    model: str
    stream: bool
    client_wants_usage: bool  # stream_options.include_usage as the client sent it
    adapted: Any = None  # the validated request, when it asks for tools, formats, logprobs, n or echo (adapt.py)


async def parse(request: Request, kind: InferenceKind, max_body_bytes: int) -> Parsed:
    body = await read_body(request.receive, request.scope, max_body_bytes)
    payload = decode_object(body)
    validated: Any = validate(payload, kind.schema)
    stream = kind.streams and bool(validated.stream)
    options = validated.stream_options if kind.streams else None
    adapted = validated if kind.streams and validated.adapted else None
    return Parsed(kind, body, payload, validated.model, stream, bool(options and options.include_usage), adapted)
