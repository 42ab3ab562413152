# `make demo` and `make test` work on a fresh clone with only Python 3.11+ and pip:
# both build .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint check bench clean screenshots

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
# The dashboard's tests drive Debian's chromium; `make test WAHUB_TEST_BROWSER=optional`
# skips them when it is absent instead of installing it. They run in a pytest process of
# their own (marker `browser`): Playwright's sync API leaves its event loop running in
# the process, where the asyncio tests that follow could not start theirs.
WAHUB_TEST_BROWSER ?= required
export WAHUB_TEST_BROWSER

test: install
ifeq ($(WAHUB_TEST_POSTGRES),required)
	./scripts/ensure-postgres
endif
	./scripts/ensure-curl
ifeq ($(WAHUB_TEST_BROWSER),required)
	./scripts/ensure-chromium
endif
	$(BIN)/pytest -q -n 2 -m "not slow and not browser"
	$(BIN)/pytest -q -m browser
	$(BIN)/pytest -q -m slow

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy --strict src

check: test lint

bench: install
	$(BIN)/wahub bench send --messages 5000 --json

# The README's dashboard screenshots, taken by the browser tests' flows.
screenshots: install
	./scripts/ensure-chromium
	WAHUB_UI_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/integration/test_ui_browser.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
