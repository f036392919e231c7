# The two commands: `make serve` (PORT=8080 by default) and `make test`. Both do all set-up, idempotently.
PORT ?= 8080
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: serve test test-fast lint setup system-deps clean-venv chart-files

serve: $(STAMP)
	$(BIN)/modelyard serve --port $(PORT) $(if $(EMBEDDINGS),--embedding-model $(EMBEDDINGS))

setup: $(STAMP)
	$(BIN)/modelyard setup

test: $(STAMP)
	$(BIN)/modelyard setup
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Unit tests only: no engine, no model.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not engine"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports
	$(BIN)/mypy

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
