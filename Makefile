# supportbot: `make serve` runs the service, `make test` runs every check. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test lint services bench bench-quick clean

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

lint: install
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy

bench: install services
	$(BIN)/python -m bench.run

bench-quick: install services
	$(BIN)/python -m bench.run --quick

test: install services lint
	$(BIN)/pytest -q -rs

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
