# Two commands do all the set-up on a fresh machine:
#   make train   create .venv if needed, install, run the main experiment notebook on SynthHeads
#   make test    same install, then nbdev_test (every notebook) and pytest tests/
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/default
PRESET ?= cpu
DATASET ?= synthheads
NB_WORKERS ?= 2

.PHONY: install train test nbtest pytest readme docs clean-nbs export check bench

$(STAMP): settings.ini setup.py constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23" setuptools wheel packaging
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

train: install
	@mkdir -p $(RUN_DIR)
	@test -f nbs/10_train.ipynb || { echo "nbs/10_train.ipynb does not exist yet: the training stages (issues 5-7) have not landed."; exit 2; }
	$(BIN)/papermill nbs/10_train.ipynb $(RUN_DIR)/10_train.ipynb -p dataset $(DATASET) -p preset $(PRESET) -p run_dir $(abspath $(RUN_DIR)) --cwd nbs

nbtest: install
	$(BIN)/nbdev_test --n_workers $(NB_WORKERS)

pytest: install
	$(BIN)/python -m pytest -q tests

test: install
	$(BIN)/nbdev_test --n_workers $(NB_WORKERS)
	$(BIN)/python -m pytest -q tests

export: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/python tools/readme.py

readme: install
	$(BIN)/python tools/readme.py
