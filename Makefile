# ksmbook: `make lab` opens the book, `make test` runs every test.
#
# Everything runs from a local virtualenv (.venv). It is (re)installed only when pyproject.toml
# is newer than its stamp file, so a second `make test` starts at once. The package is installed
# editable, so edits under ksmbook/ need no reinstall; a change to pyproject.toml (a dependency,
# an entry point) does, and happens by itself on the next make.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-ksmbook
PIP_FLAGS ?= -qq --progress-bar off
# uv installs the package and its pins into the venv (resolved as pip would, in a
# fraction of the time, compiling the bytecode as pip does); pip itself only installs uv.
UV := uv==0.13.8

# make lab: LAB_IP=0.0.0.0 LAB_PORT=9999 LAB_ARGS='...' make lab
LAB_IP   ?= 127.0.0.1
LAB_PORT ?= 8888
LAB_ARGS ?=
LAB_FLAGS := --ip=$(LAB_IP) --port=$(LAB_PORT) \
	$(if $(filter 0,$(shell id -u)),--allow-root,) \
	$(if $(DISPLAY),,--no-browser) \
	$(LAB_ARGS)

# One pytest run covers tests/ and the notebooks, so its closing summary line counts them all.
# --nbval collects only .ipynb files (strict: every stored output is compared, after the
# sanitizers); .py tests are collected as usual. --nbval-current-env runs each notebook's kernel
# on this venv's Python whatever kernelspec the notebook names.
PYTEST_PATHS := $(wildcard tests notebooks)
NBVAL_FLAGS  := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg
# pytest-xdist: one worker per CPU (at most 4), each taking whole files, so a notebook's cells
# share one kernel and a module's fixtures are built once. Tests that drive this machine's ksmd
# take the live-ksmd lock (ksmbook.live_ksmd), so they never overlap. TEST_WORKERS=0: no workers.
TEST_WORKERS ?= auto
XDIST_FLAGS  := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile)
PYTEST_ARGS  ?=

# make test-fast: the tests a contributor runs while working, in about a minute on a quiet
# 2-core machine: tests/ without the live, browser, nbgrader, hub and slow ones (markers in
# pyproject.toml; tests/conftest.py marks the browser, nbgrader and hub modules) and without
# the notebooks, with a quarter of each property test's hypothesis examples
# (KSMBOOK_FAST_EXAMPLES, tests/helpers.py). make test runs everything, in full. test-fast keeps
# pytest's rewritten test modules and the package's bytecode in __pycache__ even where
# PYTHONDONTWRITEBYTECODE is set, so that a second run does not rewrite every test module again
# (about 5 s of CPU for each worker), and does not load nbval's plugin (2 s), which it does not use.
FAST_MARKERS := not (live or browser or nbgrader or hub or slow)

.PHONY: all install system-deps lab test test-fast lint typecheck pytest html bench strip check-env clean

all: test

install: $(STAMP)

# Debian's chromium (browser tests) and nodejs/npm, installed when missing (scripts/system_deps.sh).
system-deps:
	@bash scripts/system_deps.sh

$(PY):
	$(PYTHON) -m venv $(VENV)

# The offline HTML book serves MathJax, the widget manager and requirejs from npm
# (package-lock.json).
NODE_STAMP := node_modules/.package-lock.json
$(NODE_STAMP): package.json package-lock.json | system-deps
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# JupyterLab's widget-state setting, off for the book (pyproject.toml's data-files, which an
# editable install leaves out): see jupyter-config/ and ksmbook/widgets/snapshot.py.
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.d

$(STAMP): pyproject.toml jupyter-config/ksmbook-widget-state.json | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) $(UV)
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[test,classroom]'
	mkdir -p $(LAB_OVERRIDES) && cp jupyter-config/ksmbook-widget-state.json $(LAB_OVERRIDES)/
	@touch $@

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) notebooks/

# Lint, type check and pytest all run even if an earlier one fails, so the pytest summary is
# always printed; the target fails if any of them failed.
test: $(STAMP) $(NODE_STAMP) system-deps
	@status=0; \
	echo "== ruff check ksmbook tests"; \
	$(VENV)/bin/ruff check ksmbook tests || status=1; \
	echo "== mypy ksmbook"; \
	$(VENV)/bin/mypy ksmbook || status=1; \
	echo "== pytest $(PYTEST_PATHS)"; \
	$(PY) -m pytest $(PYTEST_PATHS) $(NBVAL_FLAGS) $(XDIST_FLAGS) $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (ruff, mypy or pytest; see above)"; fi; \
	exit $$status

test-fast: $(STAMP)
	KSMBOOK_FAST_EXAMPLES=1 PYTHONDONTWRITEBYTECODE= $(PY) -m pytest tests -p no:nbval -m "$(FAST_MARKERS)" $(XDIST_FLAGS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check ksmbook tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy ksmbook

pytest: $(STAMP) $(NODE_STAMP) system-deps
	$(PY) -m pytest $(PYTEST_PATHS) $(NBVAL_FLAGS) $(XDIST_FLAGS) $(PYTEST_ARGS)

# make html: the book built by Jupyter Book (book/_config.yml, book/_toc.yml) from the notebooks
# as committed (no cell runs: the stored outputs are the book) into $(HTML_DIR), served offline.
BOOK_SOURCE ?= notebooks
BOOK_TOC    ?= book/_toc.yml
HTML_DIR    ?= build/html
HTML_WORK   ?= build/jupyter-book
html: $(STAMP) $(NODE_STAMP)
	rm -rf $(HTML_DIR) $(HTML_WORK)
	$(VENV)/bin/jupyter-book build $(BOOK_SOURCE) --config $(abspath book/_config.yml) \
		--toc $(abspath $(BOOK_TOC)) --path-output $(HTML_WORK) --warningiserror --quiet
	mkdir -p $(dir $(abspath $(HTML_DIR)))
	mv $(HTML_WORK)/_build/html $(HTML_DIR)
	@echo "make html: the book is in $(HTML_DIR)/index.html"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# Strip widget state and execution noise from the committed notebooks (outputs are kept).
strip: $(STAMP)
	$(PY) scripts/strip_notebooks.py notebooks/*.ipynb

check-env: $(STAMP)
	$(PY) scripts/check_env_agree.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -not -path './.git/*' -exec rm -rf {} +
