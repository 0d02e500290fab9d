# Treasurer — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.DEFAULT_GOAL := help
.PHONY: help run test check lint typecheck contracts unit fmt bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

run: $(STAMP) ## Initialise ./.treasurer (demo org on first run) and start the server
	$(BIN)/treasurer init --demo
	$(BIN)/treasurer serve

test: check unit ## The whole check: lint, types, import contracts, test suite

check: lint typecheck contracts ## Format check, lint, mypy --strict, import contracts

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP) $(NODE_STAMP) ## Run the test suite only (anvil comes from npm)
	$(BIN)/pytest

fmt: $(STAMP) ## Format and autofix
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP) $(NODE_STAMP) ## Run the benchmarks and write docs/benchmarks.md
	$(BIN)/python -m benchmarks.run --out docs/benchmarks.md

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
