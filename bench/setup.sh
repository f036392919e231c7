#!/usr/bin/env bash
# Set up everything the benchmarks need, idempotently, without touching the product's own .venv:
#   bench/.venv           the harness: load generators, mock upstream, plots, profilers (+ modelyard, editable)
#   bench/.venv-litellm   LiteLLM's proxy, a contender in scenario 1
#   bench/.venv-llamacpp  llama-cpp-python's OpenAI server, a contender in scenario 3 (compiled from source)
#   bench/node_modules    Portkey's open-source gateway (npm @portkey-ai/gateway), a contender in scenario 1
# plus the Debian package wrk. Each step is skipped when its stamp exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP_FLAGS=(--quiet --disable-pip-version-check)

if ! command -v wrk >/dev/null 2>&1; then
  sudo=""; if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "Installing wrk (Debian package)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk
fi

make_venv() {  # make_venv DIR STAMP_TEXT PIP_ARGS...
  local dir=$1 stamp_text=$2; shift 2
  local stamp="$dir/.bench-installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ]; then
    return 0
  fi
  echo "Creating $dir: $stamp_text" >&2
  test -x "$dir/bin/python" || "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install "${PIP_FLAGS[@]}" "$@"
  echo "$stamp_text" >"$stamp"
}

make_venv bench/.venv "harness v2" -e . aiohttp httptools uvloop orjson rich psutil matplotlib py-spy pyinstrument \
  granian
# prisma: LiteLLM's database client (the litellm-db contender); it downloads Prisma's engine binaries on first use
make_venv bench/.venv-litellm "litellm v2" 'litellm[proxy]' prisma
PORTKEY_VERSION=1.15.2
if [ ! -f bench/node_modules/@portkey-ai/gateway/build/start-server.js ] \
  || ! grep -q "\"version\": \"$PORTKEY_VERSION\"" bench/node_modules/@portkey-ai/gateway/package.json; then
  echo "Installing @portkey-ai/gateway@$PORTKEY_VERSION into bench/node_modules" >&2
  npm install --no-save --no-package-lock --prefix bench "@portkey-ai/gateway@$PORTKEY_VERSION"
fi
if [ "${BENCH_SKIP_LLAMACPP:-0}" != "1" ]; then
  # Compiled from source (several minutes on 2 cores); same CPU-native build as modelyard's own llama.cpp.
  CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    make_venv bench/.venv-llamacpp "llama-cpp-python v1" --no-binary llama-cpp-python 'llama-cpp-python[server]'
fi
echo "bench set-up complete" >&2
