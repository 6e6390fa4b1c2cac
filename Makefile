# Quick start: `make run` (dashboards + session host on the bundled sample data) and `make test` (lint + whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# pytest workers (pytest-xdist); JOBS=0 runs the suite in one process
JOBS   ?= 2
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
	$(VENV)/bin/workbench warmup
	touch $(STAMP)

run: install
	$(VENV)/bin/workbench up

test: install lint  # a ruff or mypy finding stops the run before pytest
	$(PY) -m pytest --nbval-lax -n $(JOBS) --dist loadfile  # a file's tests stay in one worker

lint: install  # ruff and mypy as configured in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/backtest_vs_peers.py
	$(PY) bench/paper_replay.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
