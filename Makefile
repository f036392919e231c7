# The two commands: `make serve` (PORT=8080 by default) and `make test`. Both do all set-up, idempotently.
PORT ?= 8080
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: serve test test-fast lint setup system-deps clean-venv

serve: $(STAMP)
	$(BIN)/modelyard serve --port $(PORT) $(if $(EMBEDDINGS),--embedding-model $(EMBEDDINGS))

setup: $(STAMP)
	$(BIN)/modelyard setup

test: $(STAMP)
	$(BIN)/modelyard setup
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r src
	$(BIN)/python -m pytest

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
