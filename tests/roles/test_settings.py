"""Settings are declared once: the sections validate what they hold, and the command line and the README's
configuration table are generated from the same declarations (these tests fail when either drifts)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.engines.supervisor import RestartPolicy
from modelyard.options import SettingsError, flat
from modelyard.roles.settings import (
    TABLE_BEGIN,
    TABLE_END,
    EngineRoleSettings,
    GatewayRoleSettings,
    ServeSettings,
    markdown_table,
    settings_declared,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_are_valid() -> None:
    settings = ServeSettings()
    assert settings.server.port == 8080
    assert settings.server.host == "127.0.0.1"
    assert settings.engine.slot_context == 16384 // 8


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"port": 0}, "--port"),
        ({"parallel": 0}, "--parallel"),
        ({"context_size": 1024, "parallel": 16}, "slots"),
        ({"max_body_bytes": 10}, "--max-body-bytes"),
        ({"model_name": "  "}, "--model-name cannot be empty"),
        ({"ratelimit_fail_mode": "sometimes"}, "--ratelimit-fail-mode must be one of open, closed"),
        ({"redis_url": "http://x"}, "--redis-url must start with"),
        ({"request_log_bodies": ("nonsense",)}, "ROUTE_GLOB=RATE"),
        ({"registry_poll_s": 0.0}, "--registry-poll must be between"),
    ],
)
def test_invalid_settings_say_what_is_wrong_and_name_the_flag(values: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        ServeSettings.of(**values)


def test_values_reach_the_section_that_declares_them() -> None:
    settings = ServeSettings.of(port=9000, parallel=4, auth=False, request_log_bodies=("*=1",))
    assert settings.server.port == 9000 and settings.engine.parallel == 4
    assert settings.security.auth is False and settings.observability.bodies.rules
    assert dict(flat(settings))["port"] == 9000
    with pytest.raises(SettingsError, match="unknown setting"):
        ServeSettings.of(prot=9000)


def test_every_setting_has_a_flag_an_environment_variable_and_help() -> None:
    flags, envs = set(), set()
    for item in settings_declared():
        option = item.option
        assert option.flag.startswith("--") and option.env.startswith("MODELYARD_") and option.help
        assert option.flag not in flags and option.env not in envs
        flags.add(option.flag)
        envs.add(option.env)


def test_the_readme_configuration_table_is_the_generated_one() -> None:
    text = README.read_text()
    assert TABLE_BEGIN in text and TABLE_END in text, "README lacks the generated settings table markers"
    in_readme = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    assert in_readme == markdown_table(), "README's table is stale: run `python -m modelyard.roles.settings`"


def test_serve_help_lists_every_declared_flag_with_its_environment_variable() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    for item in settings_declared():
        assert item.option.flag in result.output, item.option.flag
        assert item.option.env in result.output, item.option.env


def test_environment_variables_set_what_their_flag_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}
    monkeypatch.setattr("modelyard.cli.serve.run_serve", seen.update)
    env = {"MODELYARD_PORT": "9123", "MODELYARD_AUTH": "off", "MODELYARD_REQUEST_LOG_BODIES": "a=1 b=0.5"}
    result = CliRunner().invoke(app, ["serve", "--parallel", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert seen["port"] == 9123 and seen["parallel"] == 2 and seen["auth"] is False
    assert seen["request_log_bodies"] == ("a=1", "b=0.5")
    settings = ServeSettings.of(**seen)
    assert settings.server.port == 9123


def test_a_switch_given_in_words_is_refused_with_the_flag() -> None:
    result = CliRunner().invoke(app, ["serve", "--auth", "maybe"])
    assert result.exit_code == 2 and "--auth" in result.output


def test_backoff_grows_and_is_capped() -> None:
    policy = RestartPolicy(initial_backoff_s=1, multiplier=2, max_backoff_s=10)
    assert [policy.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


DEPLOYMENT_GUIDE = README.parent / "docs" / "deployment.md"


@pytest.mark.parametrize(("role", "command"), [(GatewayRoleSettings, ["gateway"]), (EngineRoleSettings, ["engine"])])
def test_every_role_s_help_lists_its_declared_flags(role: type, command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    for item in settings_declared(role):
        assert item.option.flag in result.output, item.option.flag
    if command == ["engine"]:  # the group keeps its sub-commands beside the engine role's options
        assert "build" in result.output and "path" in result.output


def test_the_deployment_guide_s_role_tables_are_the_generated_ones() -> None:
    text = DEPLOYMENT_GUIDE.read_text()
    stale = "the guide's table is stale: run `python -m modelyard.roles.settings {}`"
    assert markdown_table(GatewayRoleSettings, ("fleet",)) in text, stale.format("gateway fleet")
    assert markdown_table(EngineRoleSettings, ("role",)) in text, stale.format("engine role")


def test_the_engine_role_needs_a_model_and_workers_default_to_one_process() -> None:
    result = CliRunner().invoke(app, ["engine", "--port", "9"], env={"NO_COLOR": "1"})
    assert result.exit_code == 2 and "--model NAME[:VERSION|@ALIAS] is required" in result.output
    assert ServeSettings().server.worker_count == 1
    assert ServeSettings.of(workers=0).server.worker_count in range(1, 9)  # one per core, at most 8
