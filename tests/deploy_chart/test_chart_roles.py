"""The chart's pods' command lines and environments, parsed by modelyard's own command line: ``modelyard gateway``
and ``modelyard engine`` (issue 15's roles) must accept every flag and variable the chart gives them, with the
values the chart means, and build their settings (whose checks validate, e.g., each ``--engine-url``)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from typer.main import get_command

from modelyard.cli.main import app
from modelyard.roles.settings import EngineRoleSettings, GatewayRoleSettings, settings_declared

from .rendering import CHART, example_values, named, render


def container(objects: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    spec: dict[str, Any] = named(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
    return spec


def parse(monkeypatch: pytest.MonkeyPatch, pod: dict[str, Any], command: Any, root: type[Any]) -> Any:
    """The settings ``root`` the command builds from the container's arguments and environment."""
    for name in [n for n in os.environ if n.startswith("MODELYARD_")]:
        monkeypatch.delenv(name)
    for item in pod["env"]:
        if "value" in item:
            monkeypatch.setenv(item["name"], item["value"])
        elif item["name"] == "MODELYARD_REDIS_URL":  # from the Secret: any well-formed URL stands in for it
            monkeypatch.setenv(item["name"], "redis://redis.db.svc:6379/0")
    context = command.make_context(command.name or "", list(pod.get("args", [])))
    values = {name: value for name, value in context.params.items() if name != "ctx"}
    for item in settings_declared(root):
        if item.option.parse is not None:
            values[item.name] = item.option.parse(values[item.name])
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
    return root.of(**values)


def test_the_gateway_pod_is_a_valid_modelyard_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(example_values(CHART / "examples" / "autoscaling.yaml"))
    pod = container(objects, "modelyard-gateway")
    assert pod["command"] == ["modelyard", "gateway"]
    command = get_command(app).commands["gateway"]  # type: ignore[attr-defined]
    settings = parse(monkeypatch, pod, command, GatewayRoleSettings)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == pod["ports"][0]["containerPort"]
    assert settings.server.workers == 2
    assert settings.fleet.engine_urls == ("gemma-3-270m:1=dns+http://modelyard-llamacpp-gemma.llm.svc:8081",)
    assert settings.fleet.engine_slots == 8
    assert settings.security.auth is True
    assert settings.security.redis_url == "redis://redis.db.svc:6379/0"
    assert str(settings.control.deployments_path) == "/etc/modelyard/deployments.yaml"


def test_the_engine_pod_is_a_valid_modelyard_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(example_values(CHART / "examples" / "gpu-vllm.yaml"))
    pod = container(objects, "modelyard-llamacpp-small")
    assert pod["command"] == ["modelyard", "engine"]
    command = get_command(app).commands["engine"]  # type: ignore[attr-defined]
    settings = parse(monkeypatch, pod, command, EngineRoleSettings)
    ports = {port["name"]: port["containerPort"] for port in pod["ports"]}
    assert settings.role.model_ref == "gemma-3-270m:2"
    assert (settings.role.engine_host, settings.role.engine_port, settings.role.ops_port) == (
        "0.0.0.0",
        ports["http"],
        ports["ops"],
    )
    assert (settings.engine.parallel, settings.engine.context_size, settings.engine.threads) == (8, 16384, 4)
    grace = named(objects, "Deployment", "modelyard-llamacpp-small")["spec"]["template"]["spec"]
    assert settings.role.stop_grace_s == 30.0
    assert grace["terminationGracePeriodSeconds"] > settings.role.stop_grace_s


def test_a_flag_the_roles_do_not_have_is_refused() -> None:
    """The parsing above can fail: an unknown flag is a usage error of the real command."""
    command = get_command(app).commands["gateway"]  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="No such option: --engine-urls"):
        command.make_context("gateway", ["--engine-urls", "x"])
