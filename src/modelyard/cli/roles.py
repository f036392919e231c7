"""``modelyard gateway`` and ``modelyard engine --model …``: the parts of ``serve`` run on their own (a gateway
Deployment and engine Deployments on Kubernetes). Their options are generated from the settings' declarations,
like ``serve``'s."""

from __future__ import annotations

import inspect
import socket
from typing import Any

import typer

from modelyard.cli.serve import console, fail, prepare_engine, settings_command
from modelyard.engines.llamacpp_build import BuildError
from modelyard.engines.llamacpp_source import SourceError
from modelyard.observability.logs import configure_logging
from modelyard.options import SettingsError
from modelyard.registry.errors import RegistryError
from modelyard.roles.server import PortInUseError
from modelyard.roles.settings import EngineRoleSettings, GatewayRoleSettings
from modelyard.roles.stores import open_registry
from modelyard.routing.config import DeploymentsError, load_deployments
from modelyard.security.guardrails.config import GuardrailConfigError, load_config
from modelyard.store.database import StoreUnavailable

GATEWAY_HELP = (
    "Run a stateless gateway replica: it launches no engine, finds them from --engine-url (static URLs or DNS "
    "names, re-resolved) and keeps its state in the shared database and Redis."
)
ENGINE_HELP = (
    "The llama.cpp engine build; with --model NAME[:VERSION|@ALIAS], run one supervised engine serving that "
    "registry version (sha256 checked before loading; /health, /ready, /metrics on --ops-port)."
)


def gateway_command() -> Any:
    return settings_command(GatewayRoleSettings, run_gateway_command, GATEWAY_HELP)


def engine_callback() -> Any:
    """The ``engine`` group's callback: runs the engine role when no sub-command (``build``, ``path``) is given."""
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    return settings_command(EngineRoleSettings, run_engine_command, ENGINE_HELP, leading=[context])


def run_gateway_command(values: dict[str, Any]) -> None:
    from modelyard.roles.gateway import run_gateway_role  # imported late: other commands stay fast

    _logging(values)
    try:
        settings = GatewayRoleSettings.of(**values)
        deployments = settings.control.deployments_path
        if deployments is not None:
            settings = GatewayRoleSettings.of(**{**values, "deployments_path": deployments.expanduser().absolute()})
            load_deployments(settings.control.deployments_path)  # type: ignore[arg-type]  # a bad file fails now
        if settings.security.guardrails_file is not None:
            load_config(settings.security.guardrails_file)
        store, checker = open_registry()
        code = run_gateway_role(settings, store, checker)
    except (SettingsError, PortInUseError, GuardrailConfigError, DeploymentsError) as exc:
        raise fail(str(exc)) from None
    except StoreUnavailable as exc:
        raise fail(f"{exc}. Check MODELYARD_DATABASE_URL.") from None
    except RegistryError as exc:
        raise fail(exc.message) from None
    raise typer.Exit(code=code)


def run_engine_command(values: dict[str, Any]) -> None:
    context: typer.Context = values.pop("ctx")
    if context.invoked_subcommand is not None:
        return
    from modelyard.roles.engine import run_engine_role

    _logging(values)
    try:
        settings = EngineRoleSettings.of(**values)
        if not settings.role.model_ref:
            raise SettingsError("--model NAME[:VERSION|@ALIAS] is required to run an engine (or use a sub-command)")
        with socket.socket() as probe:  # a taken port is a clear error now, not an engine restarting forever
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.role.engine_host, settings.role.engine_port))
            except OSError as exc:
                raise PortInUseError(f"cannot listen on port {settings.role.engine_port}: {exc.strerror}") from None
        store, checker = open_registry()
        build = prepare_engine(console())
        code = run_engine_role(settings, build, store, checker)
    except (SettingsError, PortInUseError, BuildError, SourceError) as exc:
        raise fail(str(exc)) from None
    except StoreUnavailable as exc:
        raise fail(f"{exc}. Check MODELYARD_DATABASE_URL.") from None
    except RegistryError as exc:
        raise fail(exc.message) from None
    raise typer.Exit(code=code)


def _logging(values: dict[str, Any]) -> None:
    try:
        configure_logging(values.get("log_level", "info"), values.get("log_format", "text"))
    except ValueError as exc:
        raise fail(str(exc)) from None
