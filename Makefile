# Portway: the single entry point. `make up` starts the platform, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)
# The interpreter of .venv: Debian's python3.11 when present. Its binary is built with PGO and LTO
# and linked statically; on a default source build (pyenv's) a proxied request took 8-10 % more
# instructions and 10-20 % more CPU (docs/decisions.md, 2026-12-03). Override with `make VENV_PYTHON=/path/to/python3.11`.
VENV_PYTHON ?= $(or $(wildcard /usr/bin/python3.11),$(shell command -v python3.11))
export UV_PYTHON := $(VENV_PYTHON)
export UV_PYTHON_DOWNLOADS := never
# .venv/.synced names the interpreter it was made on: another one makes it again
ifneq ($(file < $(VENV)/.synced),$(VENV_PYTHON))
$(VENV)/.synced: FORCE
endif

.PHONY: help up test check fmt layers bench provision clean FORCE

FORCE:

## help: list the targets (this list; each from its `## target:` comment)
help:
	@sed -n 's/^## \([a-z-]*\): \(.*\)/\1\t\2/p' $(MAKEFILE_LIST) | expand -t 12

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --quiet
	echo '$(VENV_PYTHON)' > $@

## up: install, then start manager + worker (env dev) + demo backend on the single-host profile
up: $(VENV)/.synced
	$(BIN)/portway up

## provision: install and cache the real servers the tests use (idempotent)
provision: $(VENV)/.synced
	scripts/provision

## test: provision the real servers, then run the whole suite on one process per core (at most 4)
test: provision
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile

## check: lint, format check, strict typing
check: $(VENV)/.synced
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

## fmt: fix what ruff can fix and format the code
fmt: $(VENV)/.synced
	$(BIN)/ruff check --fix src tests bench scripts
	$(BIN)/ruff format src tests bench scripts

## layers: regenerate the package layer diagram in docs/decisions.md from the import test
layers: $(VENV)/.synced
	$(BIN)/python -m tests.test_import_direction

## bench: speed and memory, side by side with nginx and HAProxy
bench: provision
	$(BIN)/python -m bench

## clean: remove the virtual environment, the bootstrap tools and the caches
clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
