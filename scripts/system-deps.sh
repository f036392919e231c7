#!/usr/bin/env bash
# Debian packages modelyard needs to build llama.cpp, plus Prometheus (its `prometheus` and `promtool` check the
# shipped alert rules and dashboard queries in the test suite) and Chromium + npm for the web console's browser
# tests; installs only what is missing (needs root or sudo).
#   scripts/system-deps.sh         everything `make setup` / `make test` need
#   scripts/system-deps.sh build   only the engine's build toolchain (the container image's build stage)
set -euo pipefail
mode="${1:-all}"

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "$mode" != build ]; then
  { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)  # the HTTPS test makes its own certificate
  # The web console's tests: Debian's Chromium (driven by Playwright, no browser download) and npm (uPlot, axe-core).
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "modelyard needs: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "Installing Debian packages: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
