# ollabot: `make run` starts the bot, `make test` runs everything CI runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test lint bench load mutants clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/ollabot run

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP_DEV)
	$(BIN)/python bench/engine_overhead.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/discord_stream.py
	$(BIN)/python bench/matrix_stream.py
	$(BIN)/python bench/console_render.py

# About 10 minutes: 200 simulated users on the fake Discord and a real Synapse.
load: $(STAMP_DEV)
	$(BIN)/python bench/load.py

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml); scores per module.
# Not part of `make test` (about 15-25 minutes on 2 cores). Results: docs/quality.md.
mutants: $(STAMP_DEV)
	rm -rf mutants
	-$(BIN)/mutmut run --max-children 2
	$(BIN)/python tools/mutation_scores.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache mutants
