"""How the door reads a presented key (security/layer.py: ``presented_key``)."""

from __future__ import annotations

import pytest

from modelyard.errors import APIError
from modelyard.security.layer import presented_key


def test_bearer_and_x_api_key_are_read() -> None:
    assert presented_key([(b"authorization", b"Bearer my-abc")]) == b"my-abc"
    assert presented_key([(b"authorization", b"bearer   my-abc ")]) == b"my-abc"
    assert presented_key([(b"x-api-key", b"my-abc")]) == b"my-abc"
    assert presented_key([(b"content-type", b"application/json")]) is None


def test_an_authorization_header_of_another_scheme_is_not_a_key() -> None:
    for value in (b"my-abc", b"Basic bXk6YWJj", b"Token my-abc"):
        with pytest.raises(APIError) as refused:
            presented_key([(b"authorization", value)])
        assert refused.value.status == 401
        assert "Bearer" in refused.value.message


def test_an_empty_authorization_does_not_hide_a_valid_x_api_key() -> None:
    assert presented_key([(b"authorization", b""), (b"x-api-key", b"my-abc")]) == b"my-abc"
    assert presented_key([(b"authorization", b"Bearer "), (b"x-api-key", b"my-abc")]) == b"my-abc"
    assert presented_key([(b"x-api-key", b"my-abc"), (b"authorization", b"  ")]) == b"my-abc"
    # a proxy's own credentials next to the key: the key counts
    assert presented_key([(b"authorization", b"Basic eDp5"), (b"x-api-key", b"my-abc")]) == b"my-abc"
    assert presented_key([(b"authorization", b""), (b"x-api-key", b"")]) is None
