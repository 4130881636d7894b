# Everything installs from uv.lock into .venv; a stamp file skips the install when nothing changed.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.installed-stamp
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install run test lint check bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(STAMP)

## run: the service on 127.0.0.1:8000 (embedded PostgreSQL unless DATABASE_URL is set)
run: install
	$(VENV)/bin/scrapflow serve

## test: the whole test suite (embedded PostgreSQL unless TEST_DATABASE_URL is set)
test: install
	$(VENV)/bin/pytest -n 2

## lint: ruff, formatting, mypy strict
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

check: lint test

## bench: the benchmark, one table against DESIGN §7 (README, "Performance"); BENCH_ARGS="--quick"
bench: install
	$(VENV)/bin/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
