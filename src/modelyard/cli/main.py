"""``modelyard`` command line: set-up steps and ``serve``."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from modelyard import __version__, paths
from modelyard.cli.deployments import deployments_app
from modelyard.cli.evals import eval_app
from modelyard.cli.gates import gates_app
from modelyard.cli.models import models_app
from modelyard.cli.progress import build_progress, byte_progress
from modelyard.cli.requests import requests_app
from modelyard.cli.security import audit_app, keys_app
from modelyard.engines.llamacpp_build import BuildError, EngineBuild, ensure_engine
from modelyard.engines.llamacpp_server import ModelFileError, check_gguf
from modelyard.engines.llamacpp_source import SourceError
from modelyard.observability.logs import configure_logging
from modelyard.registry.bootstrap import ensure_default_registered, ensure_file_registered, open_registry
from modelyard.registry.default_model import ModelAssemblyError, ensure_default_model
from modelyard.registry.errors import RegistryError
from modelyard.routing.config import DeploymentsError, load_deployments
from modelyard.security.guardrails.config import GuardrailConfigError, load_config
from modelyard.settings import ServeSettings, SettingsError
from modelyard.store.database import StoreUnavailable, describe_url

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Run open-weight LLMs in production.")
engine_app = typer.Typer(no_args_is_help=True, help="The llama.cpp engine build.")
app.add_typer(engine_app, name="engine")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
models_app.add_typer(gates_app, name="gates")
app.add_typer(requests_app, name="requests")
app.add_typer(deployments_app, name="deployments")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
db_app = typer.Typer(no_args_is_help=True, help="The registry database (SQLite by default, or PostgreSQL).")
app.add_typer(db_app, name="db")


def _console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _configure_logging(level: str, fmt: str = "text") -> None:
    try:
        configure_logging(level, fmt)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _prepare_engine(console: Console) -> EngineBuild:
    started = time.monotonic()
    with build_progress("Building llama.cpp", console) as progress:
        build = ensure_engine(paths.cache_dir(), progress=progress, log=console.print)
    console.print(f"Engine: llama.cpp {build.version} at {build.root} ({time.monotonic() - started:.1f} s)")
    return build


def _fail(message: str) -> typer.Exit:
    _console().print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


@app.command()
def version() -> None:
    """Print modelyard's version."""
    print(__version__)


@engine_app.command("build")
def engine_build() -> None:
    """Build llama.cpp (llama-server, llama-perplexity, llama-quantize, llama-bench) or reuse the cached build."""
    try:
        _prepare_engine(_console())
    except (BuildError, SourceError) as exc:
        raise _fail(str(exc)) from None


@engine_app.command("path")
def engine_path(tool: Annotated[str, typer.Argument(help="Binary name")] = "llama-server") -> None:
    """Print the path of a cached engine binary (builds it first if needed)."""
    try:
        build = ensure_engine(paths.cache_dir(), log=_console().print)
    except (BuildError, SourceError) as exc:
        raise _fail(str(exc)) from None
    print(build.binary(tool))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the registry schema (every command does this on its own; this just does it now)."""
    from modelyard.store import migrate
    from modelyard.store.database import Database

    try:
        database = Database()
        migrate.upgrade(database)
        print(f"{describe_url(database.url)} at revision {migrate.current_revision(database)}")
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from None


@app.command()
def setup() -> None:
    """Do every one-time step: build (or reuse) the engine and assemble the default model."""
    console = _console()
    try:
        _prepare_engine(console)
        model = ensure_default_model(paths.cache_dir(), log=console.print)
    except (BuildError, SourceError, ModelAssemblyError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"Default model: {model}")


@app.command()
def serve(
    port: Annotated[int, typer.Option(envvar="MODELYARD_PORT", help="Port of the gateway.")] = 8080,
    host: Annotated[str, typer.Option(envvar="MODELYARD_HOST", help="Interface to bind.")] = "127.0.0.1",
    model: Annotated[
        Path | None, typer.Option(envvar="MODELYARD_MODEL", help="A local GGUF to serve instead of the default.")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(envvar="MODELYARD_MODEL_NAME", help="Name clients use (default: file stem).")
    ] = None,
    ctx_size: Annotated[int, typer.Option(envvar="MODELYARD_CTX_SIZE", help="Engine context, all slots.")] = 16384,
    parallel: Annotated[int, typer.Option(envvar="MODELYARD_PARALLEL", help="Engine parallel slots.")] = 8,
    threads: Annotated[int | None, typer.Option(envvar="MODELYARD_THREADS", help="Engine CPU threads.")] = None,
    embeddings: Annotated[
        bool, typer.Option(envvar="MODELYARD_EMBEDDINGS", help="Run the engine in embedding mode.")
    ] = False,
    max_body_bytes: Annotated[
        int, typer.Option(envvar="MODELYARD_MAX_BODY_BYTES", help="Largest accepted request body.")
    ] = 4 * 1024 * 1024,
    shutdown_grace: Annotated[
        float, typer.Option(envvar="MODELYARD_SHUTDOWN_GRACE", help="Seconds in-flight requests get at stop.")
    ] = 30.0,
    restart_backoff: Annotated[
        float, typer.Option(envvar="MODELYARD_RESTART_BACKOFF", help="First engine restart delay, seconds.")
    ] = 1.0,
    drain_timeout: Annotated[
        float, typer.Option(envvar="MODELYARD_DRAIN_TIMEOUT", help="Seconds a retired version's requests get.")
    ] = 300.0,
    registry_poll: Annotated[
        float, typer.Option(envvar="MODELYARD_REGISTRY_POLL", help="Seconds between registry change checks.")
    ] = 1.0,
    log_level: Annotated[str, typer.Option(envvar="MODELYARD_LOG_LEVEL")] = "info",
    log_format: Annotated[
        str, typer.Option(envvar="MODELYARD_LOG_FORMAT", help="text, or json (one object per line).")
    ] = "text",
    log_requests: Annotated[
        bool, typer.Option(envvar="MODELYARD_LOG_REQUESTS", help="One log line per request.")
    ] = True,
    request_log: Annotated[
        bool, typer.Option(envvar="MODELYARD_REQUEST_LOG", help="Store every request's metadata in the database.")
    ] = True,
    request_log_queue: Annotated[
        int, typer.Option(envvar="MODELYARD_REQUEST_LOG_QUEUE", help="Records queued before drops are counted.")
    ] = 10_000,
    request_log_retention_days: Annotated[
        float, typer.Option(envvar="MODELYARD_REQUEST_LOG_RETENTION_DAYS", help="Days request-log rows are kept.")
    ] = 30.0,
    request_log_body_retention_days: Annotated[
        float, typer.Option(envvar="MODELYARD_REQUEST_LOG_BODY_RETENTION_DAYS", help="Days bodies are kept.")
    ] = 7.0,
    request_log_bodies: Annotated[
        list[str],
        typer.Option(
            envvar="MODELYARD_REQUEST_LOG_BODIES", help="ROUTE_GLOB=RATE: keep bodies for matching routes (repeat)."
        ),
    ] = [],  # noqa: B006
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(envvar="MODELYARD_OTLP_ENDPOINT", help="OTLP/HTTP endpoint for traces (or OTEL_EXPORTER_OTLP_*)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="MODELYARD_DEPLOYMENTS",
            help="Deployments file (routes, targets, policies); hot-reloaded.",
        ),
    ] = None,
    auth: Annotated[
        str, typer.Option(envvar="MODELYARD_AUTH", help="API keys required: on, or off (explicit; warned about).")
    ] = "on",
    region: Annotated[
        str, typer.Option(envvar="MODELYARD_REGION", help="This gateway's region (key allow-lists).")
    ] = "",
    metrics_auth: Annotated[
        bool, typer.Option(envvar="MODELYARD_METRICS_AUTH", help="/metrics needs a key with the read scope.")
    ] = False,
    redis_url: Annotated[
        str | None, typer.Option(envvar="MODELYARD_REDIS_URL", help="Redis for limits and budgets across replicas.")
    ] = None,
    redis_prefix: Annotated[str, typer.Option(envvar="MODELYARD_REDIS_PREFIX", help="Prefix of Redis keys.")] = (
        "modelyard"
    ),
    ratelimit_fail_mode: Annotated[
        str, typer.Option(envvar="MODELYARD_RATELIMIT_FAIL_MODE", help="Redis unreachable: open or closed.")
    ] = "open",
    guardrails: Annotated[
        Path | None, typer.Option(envvar="MODELYARD_GUARDRAILS", help="Guardrails and request limits per route (YAML).")
    ] = None,
    key_poll: Annotated[
        float, typer.Option(envvar="MODELYARD_KEY_POLL", help="Seconds between API-key revision checks.")
    ] = 0.25,
) -> None:
    """Serve a model through the OpenAI-compatible gateway (builds the engine and model on first run)."""
    from modelyard.server import PortInUseError, run_gateway  # imported late: `modelyard engine` stays fast

    _configure_logging(log_level, log_format)
    console = _console()
    try:
        settings = ServeSettings(
            host=host,
            port=port,
            model_path=model,
            model_name=model_name,
            context_size=ctx_size,
            parallel=parallel,
            threads=threads,
            embeddings=embeddings,
            max_body_bytes=max_body_bytes,
            shutdown_grace_s=shutdown_grace,
            engine_restart_backoff_s=restart_backoff,
            drain_timeout_s=drain_timeout,
            registry_poll_s=registry_poll,
            log_level=log_level,
            log_requests=log_requests,
            log_format=log_format,
            request_log=request_log,
            request_log_queue=request_log_queue,
            request_log_retention_days=request_log_retention_days,
            request_log_body_retention_days=request_log_body_retention_days,
            request_log_bodies=tuple(request_log_bodies),
            otlp_endpoint=otlp_endpoint,
            deployments_path=config.expanduser().absolute() if config is not None else None,
            auth=_auth_flag(auth),
            region=region,
            metrics_auth=metrics_auth,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            ratelimit_fail_mode=ratelimit_fail_mode,
            guardrails_file=guardrails,
            key_poll_s=key_poll,
        )
        if guardrails is not None:
            load_config(guardrails)  # a wrong file fails now, naming the key, not after the engine build
        if settings.deployments_path is not None:
            load_deployments(settings.deployments_path)  # a bad file fails in a second, before any engine starts
        if model is not None:
            model_path = model.expanduser().absolute()
            check_gguf(model_path)  # before any build, so a wrong path fails in a second
        store, checker = open_registry()
        actor = f"modelyard-serve@{socket.gethostname()}"
        with byte_progress("sha256 of the model", console) as progress:
            if model is None:
                default_path = ensure_default_model(paths.cache_dir(), log=console.print)
                ensure_default_registered(store, checker, default_path, actor, progress)
            else:
                ensure_file_registered(store, checker, model_path, model_name or model_path.stem, actor, progress)
        build = _prepare_engine(console)
        code = run_gateway(settings, build, store, checker)
    except (
        SettingsError,
        BuildError,
        SourceError,
        ModelAssemblyError,
        ModelFileError,
        PortInUseError,
        GuardrailConfigError,
        DeploymentsError,
    ) as exc:
        raise _fail(str(exc)) from None
    except StoreUnavailable as exc:
        raise _fail(f"{exc}. Check MODELYARD_DATABASE_URL.") from None
    except RegistryError as exc:
        raise _fail(exc.message) from None
    raise typer.Exit(code=code)


def _auth_flag(value: str) -> bool:
    if value.lower() in ("on", "true", "1", "yes"):
        return True
    if value.lower() in ("off", "false", "0", "no"):
        return False
    raise SettingsError(f"--auth must be 'on' or 'off', got {value!r}")


def main() -> None:
    app()
