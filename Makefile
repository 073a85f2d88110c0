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

test: install
	python -m pytest

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
