from __future__ import annotations

from modelyard.sse import EventSplitter, Usage, carries_token, error_event, is_usage_only, usage_of_event

USAGE_ONLY = b'data: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}\n\n'
TOKEN = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
ROLE = b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n'


def test_events_are_emitted_only_when_complete_across_arbitrary_cuts() -> None:
    stream = ROLE + TOKEN + USAGE_ONLY + b"data: [DONE]\n\n"
    for cut in range(1, len(stream)):
        splitter = EventSplitter()
        events = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:])
        assert events == [ROLE, TOKEN, USAGE_ONLY, b"data: [DONE]\n\n"]
        assert splitter.remainder() == b""


def test_crlf_framing_is_normalised() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: 1\r\n\r\ndata: 2\r\n\r\n") == [b"data: 1\n\n", b"data: 2\n\n"]


def test_token_detection_ignores_the_role_chunk() -> None:
    assert carries_token(TOKEN)
    assert not carries_token(ROLE)
    assert carries_token(b'data: {"choices":[{"text":" a"}]}\n\n')


def test_usage_extraction() -> None:
    assert usage_of_event(USAGE_ONLY) == Usage(11, 5)
    assert is_usage_only(USAGE_ONLY)
    assert usage_of_event(TOKEN) is None
    final_with_choices = b'data: {"choices":[{"text":""}],"usage":{"prompt_tokens":6,"completion_tokens":4}}\n\n'
    assert usage_of_event(final_with_choices) == Usage(6, 4)
    assert not is_usage_only(final_with_choices)
    assert usage_of_event(b'data: {"usage":{ broken\n\n') is None


def test_error_event_is_openai_shaped() -> None:
    assert error_event("boom").startswith(b'data: {"error":{"message":"boom"')
