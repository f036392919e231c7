"""The floor's ASGI helpers: which client request ids are kept (asgi.py: ``client_request_id``)."""

from __future__ import annotations

import pytest

from modelyard.asgi import client_request_id


@pytest.mark.parametrize("value", [b"trace-me-42", b"0af7651916cd43dd8448eb211c80319c", b"a.b:c/d+e=f@g_h", b"x" * 128])
def test_a_plain_request_id_is_kept(value: bytes) -> None:
    assert client_request_id(value) == value


@pytest.mark.parametrize(
    "value", [None, b"", b"x" * 129, b"id status=200 route=admin", b"a\nb", b'a"b', b"\xff\xfe", b"a\tb"]
)
def test_a_request_id_that_could_forge_log_fields_is_replaced(value: bytes | None) -> None:
    assert client_request_id(value) is None
