# `make demo` and `make test` work on a fresh clone with only Python 3.11+ and pip:
# both build .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint check bench clean

# neonize (WhatsApp Web sessions) loads Debian's libmagic1 at import time: checked on
# every install, since a machine can keep .venv and lose system packages.
install: $(STAMP)
	./scripts/ensure-libmagic

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/wahub demo

# Store contract tests run on SQLite and on a throwaway PostgreSQL cluster the suite
# starts itself (one per test process). Two processes share the machine's two cores; the
# crash tests (marker `slow`) run alone after them, since they time kills against load. `make test WAHUB_TEST_POSTGRES=optional` skips PostgreSQL when absent.
WAHUB_TEST_POSTGRES ?= required
export WAHUB_TEST_POSTGRES

test: install
ifeq ($(WAHUB_TEST_POSTGRES),required)
	./scripts/ensure-postgres
endif
	./scripts/ensure-curl
	$(BIN)/pytest -q -n 2 -m "not slow"
	$(BIN)/pytest -q -m slow

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy --strict src

check: test lint

bench: install
	$(BIN)/wahub bench send --messages 5000 --json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
