# supportbot: `make serve` runs the service, `make test` runs every check. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test lint services bench bench-quick clean reliability-report

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/supportbot db upgrade
	$(BIN)/supportbot serve --host $(HOST) --port $(PORT)

services:
	@sh scripts/ensure-services.sh
	@sh scripts/ensure-browser.sh
	@sh scripts/ensure-nginx.sh

lint: install
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy

bench: install services
	$(BIN)/python -m bench.run

bench-quick: install services
	$(BIN)/python -m bench.run --quick

test: install services lint
	$(BIN)/pytest -q -rs

# docs/reliability.md from one run of the tests that record what they tried (-m reliability), only if it passed.
# CI=true: a missing PostgreSQL fails the run instead of dropping rows from the page.
reliability-report: install services
	@records=$$(mktemp) && trap 'rm -f "$$records"' EXIT && \
	CI=true SUPPORTBOT_RELIABILITY_OUT="$$records" $(BIN)/pytest -q -rs -m reliability && \
	$(BIN)/python -m tests.reliability_report "$$records" docs/reliability.md

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
