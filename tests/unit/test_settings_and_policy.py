from __future__ import annotations

import pytest

from modelyard.engines.supervisor import RestartPolicy
from modelyard.settings import ServeSettings, SettingsError


def test_defaults_are_valid() -> None:
    settings = ServeSettings()
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "port"),
        ({"parallel": 0}, "parallel"),
        ({"context_size": 1024, "parallel": 16}, "slots"),
        ({"max_body_bytes": 10}, "body"),
        ({"model_name": "  "}, "model name"),
    ],
)
def test_invalid_settings_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ServeSettings(**kwargs)


def test_backoff_grows_and_is_capped() -> None:
    policy = RestartPolicy(initial_backoff_s=1, multiplier=2, max_backoff_s=10)
    assert [policy.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
