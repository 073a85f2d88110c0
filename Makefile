# Two commands a user needs: `make repro` (the whole pipeline on params.yaml) and `make test`.
# Both create .venv with Python 3.11 and the pinned dependencies on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Stage commands in dvc.yaml call `python`: the venv must come first on PATH for them.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install repro test bench lint clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

repro: install
	dvc repro

# One pytest worker per core, at most 4, each taking whole test files (--dist loadfile), so a file's
# module fixtures (two clones) are built once; the one tiny `dvc repro` the end-to-end tests share is built
# once across all workers (tests/conftest.py's tiny_repo). Most of the suite's time is stage subprocesses
# importing torch, one core each: on 2 cores this takes about 2/3 of the serial time. tests/README.md says
# how to run one part (e.g. `python -m pytest tests/unit`).
test: install
	python -m pytest -n auto --maxprocesses 4 --dist loadfile

# ruff comes with the dev extra, installed on top of the test set-up the first time only.
$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

lint: $(VENV)/.dev-installed
	ruff check .

bench: install
	python bench/train_throughput.py
	python bench/generate_throughput.py

clean-venv:
	rm -rf $(VENV)
