# The two commands that matter: `make demo` and `make test`.
# Both create .venv on first use and reinstall when pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SMOKE := .smoke-venv
# The demo and the benchmarks import examples/ (demo, media_app) from here,
# as pytest does (pyproject's pythonpath); no code edits sys.path.
EXAMPLES := PYTHONPATH=examples
# `make bench BENCH=benchmarks/bench_pool.py` runs one benchmark.
BENCH ?= $(sort $(wildcard benchmarks/bench_*.py))

.PHONY: demo test lint typecheck pytest package docs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(EXAMPLES) $(BIN)/python -m demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict src tests/typing examples
	$(BIN)/pyright tests/typing

# PYTEST_ARGS='-m "not slow"' skips the multi-process and soak tests locally;
# CI runs everything.
pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Build sdist and wheel, check their metadata and contents, install the wheel
# into a fresh virtualenv without dev dependencies, use it, and verify that
# pyright knows the type of every public symbol.
package: $(STAMP)
	rm -rf dist $(SMOKE)
	$(BIN)/python -m build --outdir dist . > /dev/null
	$(BIN)/twine check --strict dist/*
	$(BIN)/python scripts/check_wheel.py dist/*.whl
	$(PYTHON) -m venv $(SMOKE)
	$(SMOKE)/bin/python -m pip install --quiet "$$(ls dist/*.whl)[binary,fastapi,prometheus,starlette]"
	cd /tmp && $(CURDIR)/$(SMOKE)/bin/python $(CURDIR)/scripts/smoke.py
	cd /tmp && VIRTUAL_ENV=$(CURDIR)/$(SMOKE) PATH=$(CURDIR)/$(SMOKE)/bin:$$PATH \
		$(CURDIR)/$(BIN)/pyright --verifytypes seerrperf --ignoreexternal

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

test: lint typecheck pytest package docs

bench: $(STAMP)
	@for f in $(BENCH); do echo "== $$f"; $(EXAMPLES) $(BIN)/python $$f || exit 1; done
	$(BIN)/python benchmarks/render.py

clean:
	rm -rf $(VENV) $(SMOKE) .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build site
