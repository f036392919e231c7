"""Build llama.cpp's tools once per (source version, build flags, compiler, CPU) and reuse them forever after.

A cached build is a directory holding the binaries and a ``build.json`` manifest with each binary's sha256. The
manifest is written last and the directory is moved into place with one ``rename``, so an interrupted build can
never look complete; a later tampering or truncation is caught by the hashes and triggers a rebuild. A file lock
keeps two concurrent ``make`` runs from compiling the same thing twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.engines.llamacpp_source import LLAMA_CPP_SOURCE, SourcePin, extract_llama_cpp, fetch_sdist
from modelyard.hashing import file_sha256

TOOLS = ("llama-server", "llama-perplexity", "llama-quantize", "llama-bench")

# On x86-64, ggml's AMX matrix kernels are left out even where the CPU has AMX: on Sapphire Rapids guests (seen
# here under Firecracker) -march=native turns them on and llama-server segfaults in ggml_backend_amx_mul_mat on
# its first decode. GCC and clang apply explicit -mno-* flags after -march=native whatever their order. The
# AVX-512 kernels still run.
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
_X86 = platform.machine().lower() in ("x86_64", "amd64")

CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    *((f"-DCMAKE_C_FLAGS={_NO_AMX}", f"-DCMAKE_CXX_FLAGS={_NO_AMX}") if _X86 else ()),
)

# One build for any x86-64 CPU (what a container image ships): ggml's CPU backend is compiled once per instruction
# set level (x64, SSE4.2, AVX, AVX2, AVX-512, ...) as shared modules next to the binaries, and loaded at start for
# the CPU it finds (GGML_BACKEND_DL needs shared libraries; $ORIGIN lets the copied binaries find them).
ALL_VARIANTS_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU_ALL_VARIANTS=ON",
    "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)
# `make setup` builds for this machine; the container image sets this to "all-variants" in both of its stages, so
# the build stage and the runtime agree on which build to use.
BUILD_KIND_ENV = "MODELYARD_ENGINE_BUILD"

MANIFEST = "build.json"

ProgressCallback = Callable[[int, int, str], None]
_PROGRESS_RE = re.compile(r"^\[\s*(\d+)/(\d+)\]|^\[\s*(\d+)%\]")


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class EngineBuild:
    """A verified set of llama.cpp binaries."""

    root: Path
    version: str
    key: str

    def binary(self, tool: str) -> Path:
        return self.root / "bin" / tool


@dataclass(frozen=True)
class BuildSpec:
    pin: SourcePin = LLAMA_CPP_SOURCE
    flags: tuple[str, ...] = CMAKE_FLAGS
    tools: tuple[str, ...] = TOOLS
    jobs: int = field(default_factory=lambda: os.cpu_count() or 2)

    @classmethod
    def all_variants(cls) -> BuildSpec:
        """The portable build: every CPU backend variant, loaded at run time for the CPU found."""
        return cls(flags=ALL_VARIANTS_FLAGS)

    @classmethod
    def default(cls) -> BuildSpec:
        """This machine's build, or the portable one where ``MODELYARD_ENGINE_BUILD=all-variants`` (the image)."""
        kind = os.environ.get(BUILD_KIND_ENV, "native")
        if kind not in ("native", "all-variants"):
            raise BuildError(f"{BUILD_KIND_ENV} must be native or all-variants, not {kind!r}")
        return cls.all_variants() if kind == "all-variants" else cls()

    @property
    def portable(self) -> bool:
        return "-DGGML_CPU_ALL_VARIANTS=ON" in self.flags

    def key(self) -> str:
        """Everything that changes the produced machine code is part of the key. A portable build does not depend
        on this CPU, and is found again where no compiler is installed (the image's runtime stage); its compiler
        is recorded in the manifest instead."""
        identity = {} if self.portable else {"compiler": _compiler_identity(), "cpu": _cpu_identity()}
        material = json.dumps(
            {"version": self.pin.version, "sha256": self.pin.sha256, "flags": self.flags, "tools": self.tools}
            | identity,
            sort_keys=True,
        )
        kind = "-all-variants" if self.portable else ""
        return f"llama.cpp-{self.pin.version}{kind}-{hashlib.sha256(material.encode()).hexdigest()[:12]}"


def _compiler_identity() -> str:
    try:
        out = subprocess.run(["c++", "--version"], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return "none"
    return out.splitlines()[0] if out else "unknown"


def _cpu_identity() -> str:
    """GGML_NATIVE compiles for this CPU's instruction set, so a different CPU needs a different build."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return hashlib.sha256(line.encode()).hexdigest()[:16]
    except OSError:
        pass
    return os.uname().machine


def load_cached(root: Path, spec: BuildSpec) -> EngineBuild | None:
    """Return the build at ``root`` only if it is complete and every binary still has its recorded hash."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    recorded = manifest.get("binaries", {})
    if set(recorded) != set(spec.tools):
        return None
    libraries = manifest.get("libraries", {})
    if spec.portable and not any(name.startswith("libggml-cpu") for name in libraries):
        return None
    for name, digest in {**recorded, **libraries}.items():
        path = root / "bin" / name
        executable = name in recorded
        if not path.is_file() or (executable and not os.access(path, os.X_OK)) or file_sha256(path) != digest:
            return None
    return EngineBuild(root=root, version=manifest["version"], key=manifest["key"])


def ensure_engine(
    cache_root: Path,
    spec: BuildSpec | None = None,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] = print,
) -> EngineBuild:
    """Return a verified build, compiling it first if no valid cached one exists."""
    spec = spec or BuildSpec.default()
    engines_dir = cache_root / "engines"
    engines_dir.mkdir(parents=True, exist_ok=True)
    final = engines_dir / spec.key()
    cached = load_cached(final, spec)
    if cached:
        return cached
    with _exclusive(engines_dir / ".build.lock", log):
        cached = load_cached(final, spec)  # another process may have finished it while we waited
        if cached:
            return cached
        if final.exists():
            log(f"Cached engine at {final} is incomplete or corrupt; rebuilding it.")
            shutil.rmtree(final)
        _check_toolchain()
        sdist = fetch_sdist(spec.pin, cache_root / "sources", log)
        work = engines_dir / f".work-{spec.key()}"
        try:
            source = extract_llama_cpp(sdist, work / "src")
            _compile(source, work / "build", spec, progress, log)
            staging = engines_dir / f".staging-{spec.key()}"
            shutil.rmtree(staging, ignore_errors=True)
            _install(work / "build", staging, spec)
            staging.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        build = load_cached(final, spec)
        if build is None:
            raise BuildError(f"The engine build at {final} failed verification right after it was built.")
        return build


@contextmanager
def _exclusive(lock_path: Path, log: Callable[[str], None]) -> Iterator[None]:
    with lock_path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("Another modelyard process is building the engine; waiting for it ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_toolchain() -> None:
    missing = [tool for tool in ("cmake", "c++", "cc") if shutil.which(tool) is None]
    if missing:
        raise BuildError(
            "Building llama.cpp needs " + ", ".join(missing) + ". On Debian/Ubuntu: "
            "sudo apt-get install -y cmake g++ ninja-build  (make serve / make test do this for you)."
        )


def configure(source: Path, build_dir: Path, spec: BuildSpec) -> None:
    """CMake's configure step of ``spec`` (the first half of a build; the tests run it alone for the portable
    flags, whose full build is the image's business)."""
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    command = ["cmake", "-S", str(source), "-B", str(build_dir), *generator, *spec.flags]
    _run_logged(command, build_dir.parent / "configure.log", "configure llama.cpp")


def _compile(
    source: Path, build_dir: Path, spec: BuildSpec, progress: ProgressCallback | None, log: Callable[[str], None]
) -> None:
    configure(source, build_dir, spec)
    build = ["cmake", "--build", str(build_dir), "-j", str(spec.jobs), "--target", *spec.tools]
    log(f"Compiling llama.cpp {spec.pin.version} ({', '.join(spec.tools)}) with {spec.jobs} jobs ...")
    started = time.monotonic()
    build_log = build_dir.parent / "build.log"
    with build_log.open("w") as sink:
        proc = subprocess.Popen(build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            match = _PROGRESS_RE.match(line)
            if match and progress:
                if match.group(3):
                    progress(int(match.group(3)), 100, line.strip())
                else:
                    progress(int(match.group(1)), int(match.group(2)), line.strip())
        code = proc.wait()
    if code != 0:
        tail = build_log.read_text()[-3000:]
        raise BuildError(f"llama.cpp build failed (exit {code}); last output:\n{tail}")
    log(f"Compiled in {time.monotonic() - started:.0f} s.")


def _run_logged(command: list[str], log_path: Path, what: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    log_path.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise BuildError(f"Could not {what} (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")


def _install(build_dir: Path, staging: Path, spec: BuildSpec) -> None:
    bin_dir = staging / "bin"
    bin_dir.mkdir(parents=True)
    digests = {}
    for tool in spec.tools:
        built = build_dir / "bin" / tool
        if not built.is_file():
            raise BuildError(f"The build finished but produced no {tool} at {built}")
        shutil.copy2(built, bin_dir / tool)
        digests[tool] = file_sha256(bin_dir / tool)
    libraries = {}
    if spec.portable:  # libllama, libggml, libggml-base and every libggml-cpu-<variant>, beside the binaries
        for library in sorted((build_dir / "bin").glob("lib*.so*")):
            shutil.copy2(library, bin_dir / library.name, follow_symlinks=True)
            libraries[library.name] = file_sha256(bin_dir / library.name)
    smoke = subprocess.run([str(bin_dir / "llama-server"), "--version"], capture_output=True, text=True, check=False)
    if smoke.returncode != 0:
        raise BuildError(f"The freshly built llama-server does not run: {smoke.stderr.strip()[-1000:]}")
    manifest = {
        "key": spec.key(),
        "version": spec.pin.version,
        "flags": list(spec.flags),
        "binaries": digests,
        "libraries": libraries,
        "compiler": _compiler_identity(),
        "llama_server_version": (smoke.stdout + smoke.stderr).strip().splitlines()[-1:],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = staging / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.rename(staging / MANIFEST)
