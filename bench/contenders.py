"""How each contender is started, with the settings that make the comparison fair.

- ``direct``: the mock upstream itself (or llama-server itself, in the engine scenario).
- ``modelyard``: modelyard's real gateway (``bench.gateway_launcher``, run with the product's ``.venv``) in front of
  the same mock; gateway flags pass through (``--gateway-arg``) so features can be toggled as they arrive.
- ``baseline``: the same gateway from another commit's source (``--baseline REV``), for before/after comparisons
  of hot-path changes in one interleaved run.
- ``all-on``: the same gateway with the features a user gets by default: keys required (one key with rpm/tpm
  limits charged), metrics, a JSON request line per request and the stored request log (SQLite).
- ``granian``: the all-off gateway served by granian's ASGI server instead of uvicorn (the HTTP-layer comparison).
- ``litellm``: LiteLLM's proxy from ``bench/.venv-litellm`` in front of the same mock, following its production
  guide: one uvicorn worker (same as modelyard's one process), no database (so no spend/error log writes), logging at
  ERROR, a master key (LiteLLM refuses to start without one; every request carries it), telemetry off.
- ``litellm-db``: the same with a PostgreSQL database (``LITELLM_DATABASE_URL``, default database
  ``litellm_bench`` on 127.0.0.1): requests carry a virtual key made through ``/key/generate`` and LiteLLM writes
  its spend logs. LiteLLM reaches PostgreSQL through Prisma, whose engine binaries it downloads on first use.
- ``portkey``: Portkey's open-source gateway (npm ``@portkey-ai/gateway``, Node, installed into
  ``bench/node_modules`` by ``bench/setup.sh``), headless, pointed at the mock through its ``x-portkey-provider``
  (openai) and ``x-portkey-custom-host`` request headers, as its docs show for self-hosted OpenAI-compatible servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.procs import BENCH, PRODUCT_PYTHON, REPO, Pinning, Service, free_port

MOCK_MODEL = "mock-model"
LITELLM_KEY = "sk-bench-0123456789abcdef0123456789abcdef"
LITELLM_BIN = BENCH / ".venv-litellm" / "bin" / "litellm"
PORTKEY_JS = BENCH / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
HARNESS = BENCH / ".venv" / "bin" / "python"
MODELYARD_KEY = "my-benchbenchbenchbenchbenchbenchbenchbenchben"
LITELLM_DATABASE = "postgresql://postgres@127.0.0.1:5432/litellm_bench"


@dataclass(frozen=True)
class Endpoint:
    """Where a contender answers OpenAI requests."""

    name: str
    port: int
    service: Service | None = None
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {LITELLM_KEY}"})

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


MOCKS = {"raw": "bench.mock_upstream", "aiohttp": "bench.mock_aiohttp"}


def start_mock(
    log_dir: Path,
    pinning: Pinning,
    latency_ms: float = 0.0,
    token_rate: float = 0.0,
    tokens: int = 16,
    kind: str = "raw",
) -> Endpoint:
    """The mock upstream: ``raw`` (asyncio + httptools, the default) or ``aiohttp`` (as in the issue's probes)."""
    port = free_port()
    command = [
        *pinning.prefix(pinning.servers),
        sys.executable,
        "-m",
        MOCKS[kind],
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--token-rate",
        str(token_rate),
        "--tokens",
        str(tokens),
        "--model",
        MOCK_MODEL,
    ]
    service = Service("mock", command, f"http://127.0.0.1:{port}/health", log_dir)
    service.wait_ready(30)
    return Endpoint("direct", port, service)


def export_source(revision: str, into: Path) -> Path:
    """Another commit's ``src/`` with a launcher that fits it (``git archive``), to run an earlier gateway beside
    the current one. The launcher follows the gateway's internals, so it comes from that commit too; a commit from
    before the harness existed gets the first launcher written after it."""
    target = into / f"tree-{revision}"
    if not (target / "src" / "modelyard").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        _extract(revision, "src", target)
        _extract(_launcher_revision(revision), "bench", target)
    return target


def _launcher_revision(revision: str) -> str:
    launcher = "bench/gateway_launcher.py"
    found = subprocess.run(["git", "cat-file", "-e", f"{revision}:{launcher}"], cwd=REPO, capture_output=True)
    if found.returncode == 0:
        return revision
    added = subprocess.run(
        ["git", "log", "--reverse", "--diff-filter=A", "--format=%H", f"{revision}..HEAD", "--", launcher],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    if not added.stdout.split():
        raise SystemExit(f"no {launcher} at or after {revision}")
    return added.stdout.split()[0]


def _extract(revision: str, path: str, into: Path) -> None:
    archive = subprocess.run(["git", "archive", revision, path], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def start_modelyard(
    log_dir: Path,
    pinning: Pinning,
    upstream: Endpoint,
    extra_args: list[str],
    name: str = "modelyard",
    source: Path | None = None,
    python: Path = PRODUCT_PYTHON,
) -> Endpoint:
    """modelyard's gateway; with ``source`` (a tree from :func:`export_source`), that tree's launcher and package
    run instead (e.g. a baseline)."""
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `make setup` (or `make bench-setup`) first")
    port = free_port()
    command = [
        *pinning.prefix(pinning.servers),
        str(python),
        "-m",
        "bench.gateway_launcher",
        "--port",
        str(port),
        "--upstream",
        upstream.base,
        "--model",
        MOCK_MODEL,
        *extra_args,
    ]
    env = {"PYTHONPATH": f"{source / 'src'}:{source}"} if source else None
    service = Service(name, command, f"http://127.0.0.1:{port}/ready", log_dir, env=env, cwd=source or REPO)
    service.wait_ready(60)
    return Endpoint(name, port, service)


def all_on_args(log_dir: Path) -> list[str]:
    """The gateway's flags for every per-request feature on (what ``modelyard serve`` runs by default)."""
    return [
        *("--auth-key", MODELYARD_KEY, "--security-db", str(log_dir / "all-on-security.db")),
        *("--log-level", "info", "--log-format", "json", "--log-requests"),
        *("--request-log", str(log_dir / "all-on-requests.db")),
    ]


def start_litellm(log_dir: Path, pinning: Pinning, upstream: Endpoint, database: str | None = None) -> Endpoint:
    if not LITELLM_BIN.exists():
        raise SystemExit(f"{LITELLM_BIN} is missing: run `make bench-setup` first")
    port = free_port()
    name = "litellm-db" if database else "litellm"
    config = log_dir / f"{name}-config.yaml"
    storage = (
        [f"  database_url: {database}", "  disable_spend_logs: false", "  disable_error_logs: true"]
        if database
        else ["  disable_spend_logs: true", "  disable_error_logs: true"]
    )
    config.write_text(
        "\n".join(
            [
                "model_list:",
                f"  - model_name: {MOCK_MODEL}",
                "    litellm_params:",
                f"      model: openai/{MOCK_MODEL}",
                f"      api_base: {upstream.base}/v1",
                "      api_key: none",
                "litellm_settings:",
                "  set_verbose: false",
                "  request_timeout: 600",
                "  telemetry: false",
                "general_settings:",
                *storage,
                "",
            ]
        )
    )
    command = [
        *pinning.prefix(pinning.servers),
        str(LITELLM_BIN),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env = {"LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    if database:
        _create_database(database)
        env["DATABASE_URL"] = database
    service = Service(name, command, f"http://127.0.0.1:{port}/health/liveliness", log_dir, env=env, cwd=log_dir)
    service.wait_ready(300)
    if not database:
        return Endpoint(name, port, service)
    try:
        key = _virtual_key(port)
    except BaseException:
        service.stop(5)
        raise
    return Endpoint(name, port, service, {"Authorization": f"Bearer {key}"})


def _create_database(url: str) -> None:
    """The database LiteLLM migrates into (its own, not the tests'); an existing one is reused."""
    host_and_db = url.rsplit("@", 1)[1]
    database = host_and_db.rsplit("/", 1)[1]
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], capture_output=True, check=False)


def _virtual_key(port: int) -> str:
    """A LiteLLM virtual key for the mock model (stored in its database, checked and charged on every request)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/key/generate",
        data=json.dumps({"models": [MOCK_MODEL], "key_alias": f"bench-{os.getpid()}"}).encode(),
        headers={"Authorization": f"Bearer {LITELLM_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(json.load(answer)["key"])


def start_portkey(log_dir: Path, pinning: Pinning, upstream: Endpoint) -> Endpoint:
    if not PORTKEY_JS.exists():
        raise SystemExit(f"{PORTKEY_JS} is missing: run `make bench-setup` first")
    port = free_port()
    command = [*pinning.prefix(pinning.servers), "node", str(PORTKEY_JS), f"--port={port}", "--headless"]
    service = Service("portkey", command, f"http://127.0.0.1:{port}/", log_dir, env={"NODE_ENV": "production"})
    service.wait_ready(60)
    headers = {
        "Authorization": f"Bearer {LITELLM_KEY}",  # passed on to the provider (the mock ignores it)
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"{upstream.base}/v1",
    }
    return Endpoint("portkey", port, service, headers)


def start_on_mock(
    started: list[Service],
    log_dir: Path,
    pinning: Pinning,
    names: list[str],
    gateway_args: list[str],
    baseline: str | None = None,
    **mock_settings: Any,
) -> dict[str, Endpoint]:
    """The mock and, in front of it, each named gateway (plus ``baseline`` when a revision is given).

    Each service joins ``started`` as soon as it runs, so one that fails to start does not leave the others behind.
    """

    def keep(endpoint: Endpoint) -> Endpoint:
        if endpoint.service is not None:
            started.append(endpoint.service)
        return endpoint

    mock = keep(start_mock(log_dir, pinning, **mock_settings))
    endpoints = {"direct": mock}
    if "modelyard" in names:
        endpoints["modelyard"] = keep(start_modelyard(log_dir, pinning, mock, gateway_args))
    if baseline:
        source = export_source(baseline, log_dir.parent)
        endpoints["baseline"] = keep(start_modelyard(log_dir, pinning, mock, gateway_args, "baseline", source))
    if "all-on" in names:
        all_on = start_modelyard(log_dir, pinning, mock, [*gateway_args, *all_on_args(log_dir)], "all-on")
        endpoints["all-on"] = keep(replace(all_on, headers={"Authorization": f"Bearer {MODELYARD_KEY}"}))
    if "granian" in names:
        granian_args = [*gateway_args, "--server", "granian"]  # granian is a harness dependency, not the product's
        endpoints["granian"] = keep(start_modelyard(log_dir, pinning, mock, granian_args, "granian", python=HARNESS))
    if "litellm" in names:
        endpoints["litellm"] = keep(start_litellm(log_dir, pinning, mock))
    if "litellm-db" in names:
        database = os.environ.get("LITELLM_DATABASE_URL", LITELLM_DATABASE)
        endpoints["litellm-db"] = keep(start_litellm(log_dir, pinning, mock, database))
    if "portkey" in names:
        endpoints["portkey"] = keep(start_portkey(log_dir, pinning, mock))
    return endpoints
