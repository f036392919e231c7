"""Logprobs in OpenAI's exact shapes, whatever the engine answered.

Chat: ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}],
"refusal": null}`` — engine extras such as llama.cpp's token ``id`` are dropped. Completions (the legacy API that
``lm-eval`` and older clients parse): ``{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}],
"text_offset"}``, where ``text_offset`` is each token's character offset in the choice's ``text``.
"""

from __future__ import annotations

import codecs
from typing import Any

_ENTRY_FIELDS = ("token", "logprob", "bytes")


def chat_logprobs(engine: Any) -> Any:
    if not isinstance(engine, dict):
        return engine
    content = engine.get("content")
    if not isinstance(content, list):
        return engine
    return {"content": [_chat_entry(entry) for entry in content], "refusal": engine.get("refusal")}


def _chat_entry(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: entry.get(k) for k in _ENTRY_FIELDS}
    out["top_logprobs"] = [{k: top.get(k) for k in _ENTRY_FIELDS} for top in entry.get("top_logprobs") or []]
    return out


class LegacyLogprobs:
    """Converts llama.cpp's content list into the legacy arrays, piece by piece (a stream converts each chunk
    with the same object, so offsets continue where the last chunk ended)."""

    def __init__(self, start_offset: int = 0) -> None:
        self._offset = start_offset
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")

    def convert(self, engine: Any) -> Any:
        if not isinstance(engine, dict) or not isinstance(engine.get("content"), list):
            return engine  # already legacy (or absent)
        tokens, logprobs, tops, offsets = [], [], [], []
        for entry in engine["content"]:
            tokens.append(entry.get("token", ""))
            logprobs.append(entry.get("logprob"))
            tops.append({t.get("token", ""): t.get("logprob") for t in entry.get("top_logprobs") or []})
            offsets.append(self._offset)
            raw = entry.get("bytes")
            piece = self._decoder.decode(bytes(raw)) if isinstance(raw, list) else entry.get("token", "")
            self._offset += len(piece)
        return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}
