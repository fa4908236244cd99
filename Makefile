# Two commands set everything up on a fresh machine:
#   make run    creates .venv, installs seqcast, runs the whole pipeline (dvc repro)
#   make test   creates .venv, installs seqcast with test extras, runs the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/seqcast run

test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder  # two workers, one module at a time each, slow modules first (tests/conftest.py)

clean:
	rm -rf $(VENV) mlruns mlflow.db
