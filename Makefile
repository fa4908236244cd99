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

# the scripts, styles and fonts the HTML reports load, at the versions their pages name (web/package.json):
# copied into each report so that it renders with no network (tasks/offline_html.py)
WEB    := $(VENV)/share/seqcast-web

$(VENV)/.installed: pyproject.toml web/package.json web/package-lock.json | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	mkdir -p $(WEB) && cp web/package.json web/package-lock.json web/.npmrc $(WEB)/
	cd $(WEB) && npm ci --silent
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/seqcast run

test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder  # two workers, one module at a time each, slow modules first (tests/conftest.py)

clean:
	rm -rf $(VENV) mlruns mlflow.db
