# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use and installs what it needs into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/apply_batch.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# make bench [BENCH_URL=postgresql://...]
bench: $(STAMP)
	$(BIN)/python bench/steps.py $(if $(BENCH_URL),--url '$(BENCH_URL)')
	$(if $(BENCH_URL),$(BIN)/python bench/workers.py --url '$(BENCH_URL)')

clean:
	rm -rf $(VENV) .tether .pytest_cache .mypy_cache .ruff_cache
