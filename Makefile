# The two commands of the README: `make demo` and `make test`. Both create .venv and install.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: install system-deps demo test test-fast fuzz bench lint lock clean pacs pacs-stop

# pyproject.toml holds compatible ranges; requirements.lock the exact versions installed here (pip constraints)
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps -c requirements.lock flwr  # Flower: see the federated extra in pyproject.toml
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the tests need (Orthanc, dicom3tools, PostgreSQL, Chromium, ...): scripts/system_deps.txt
system-deps:
	@bash scripts/install_system_deps.sh

demo: $(STAMP)
	$(VENV)/bin/medannot demo --out $(DEMO_OUT)

test: $(STAMP) system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) system-deps
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# long hostile-input and crash runs (tests marked fuzz: kill -9 cycles, many Schemathesis examples); make test runs a sample
fuzz: $(STAMP) system-deps
	$(PY) -m pytest -m fuzz $(PYTEST_ARGS)

# A local Orthanc PACS with DICOMweb on 127.0.0.1 (data in $(PACS_DIR)); see README "PACS round trip".
PACS_DIR ?= .pacs
PACS_PORT ?= 8042
pacs: $(STAMP) system-deps
	$(PY) -m medannot.testing.orthanc start $(PACS_DIR) --port $(PACS_PORT)

pacs-stop:
	$(PY) -m medannot.testing.orthanc stop $(PACS_DIR)

# ruff (pyflakes, isort, bugbear, pyupgrade) and mypy on src/ (settings in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy

# rewrite requirements.lock from the installed .venv (after changing a range in pyproject.toml and installing)
lock: $(STAMP)
	$(PY) scripts/write_lock.py

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
