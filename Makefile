# The study's entry points. Each target creates the virtual environment on first use.
#   make setup                 create .venv and install the pinned dependencies (requirements.txt)
#   make book                  run the study (PROFILE=demo by default) and build the book into _build/html
#   make test                  lint (ruff), unit tests + the end-to-end smoke run (every notebook, then the book,
#                              then the built pages in headless Chromium: tools/install_browser.sh installs it)
#   make pdf                   the whole book as one PDF, _build/book.pdf (after make book; Sphinx's single-page
#                              HTML printed by Debian's headless Chromium: no LaTeX, nothing downloaded)
#   make test-book             the built book (_build/html) in headless Chromium at 1280 and 414 px, screenshots kept
#   make lint                  ruff check and ruff format --check (settings in pyproject.toml)
#   make test-cluster          the smoke study through a real single-node Slurm (tools/slurm_local.sh starts and stops it)
# Variables: PROFILE=smoke|demo|paper  DATA_DIR=/path/to/C-NMC_Leukemia  SET="epochs=3 batch_size=16"
#            CHAPTER="03_ensemble_ablation" (execute only these chapters from the finished runs, rebuild the book)
#            EXECUTOR=local|slurm (slurm: one job per training run through submitit; SET="partition=gpu")
#            TEST_WORKERS=2 (pytest-xdist processes for make test and make unit, one test file each; 0: in this process)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
DATA_DIR ?=
SET ?=
EXECUTOR ?=
CHAPTER ?=
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile
STAMP := $(VENV)/.installed

.PHONY: setup book pdf test test-book browser test-cluster unit lint clean-book

setup: $(STAMP)

# Re-installs whenever the lock or the project metadata is newer than the last install.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

book: $(STAMP)
	$(PY) -m alllib study --profile $(PROFILE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(EXECUTOR),--executor $(EXECUTOR)) $(foreach s,$(SET),--set $(s)) $(foreach c,$(CHAPTER),--only $(c))

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint browser
	$(PYTEST)

# Debian's chromium and chromium-driver, for the browser test (installed when missing; never downloaded at run time)
browser:
	tools/install_browser.sh

pdf: $(STAMP) browser
	@test -d book/_generated || { echo "make pdf: no generated pages; run make book first" >&2; exit 1; }
	$(VENV)/bin/jupyter-book build . --builder singlehtml --keep-going > _build/singlehtml.log 2>&1 || { tail -20 _build/singlehtml.log; exit 1; }
	chromium --headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
	  --disable-component-update --disable-sync --user-data-dir=$$(mktemp -d) --no-pdf-header-footer \
	  --virtual-time-budget=20000 --print-to-pdf=_build/book.pdf _build/singlehtml/book/intro.html 2>/dev/null
	@echo "make pdf: _build/book.pdf ($$(du -h _build/book.pdf | cut -f1))"

test-book: $(STAMP) browser
	$(PY) -m alllib.book.browser _build/html

# A real single-node Slurm on this machine (Debian's slurm-wlm and munge, installed if missing; root).
test-cluster: $(STAMP)
	tools/test_cluster.sh

unit: lint
	$(PYTEST) -m "not e2e"

clean-book:
	rm -rf _build book/_generated
