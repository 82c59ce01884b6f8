# odesr: every target creates .venv itself when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
export ODESR_DATA ?= $(abspath ../shared/datasets)

.PHONY: install test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check odesr baselines bench tests

bench: $(VENV)/.installed
	$(PY) -m bench.speed_eval

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
