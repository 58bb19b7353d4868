# The README's two commands:  `make run`  (the main job)  and  `make test`  (the tests).
# Both start with the idempotent set-up in scripts/setup.sh.
VENV ?= .venv
BIN := $(VENV)/bin
TIER ?= cpu
OUT ?= runs/demo

.PHONY: setup run test lint nbtest pytest export clean-nbs readme bench docs docs-setup docs-check

setup:
	@VENV=$(VENV) bash scripts/setup.sh

run: setup
	$(BIN)/ssl_learn demo --tier $(TIER) --out $(OUT)

test: setup lint
	# two notebooks at a time, one thread each: two 2-thread processes on 2 cores fight over them; OpenMP threads
	# sleep rather than spin while they wait, as the jobs share the cores (results/foundation/omp_wait_policy.md)
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/nbdev-test --n-workers 2
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/python -m pytest -q tests

# the exported package: 120 columns, no unused imports or undefined names (settings in pyproject.toml)
lint: setup
	$(BIN)/ruff check ssl_learn

# notebook development
export: setup
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean && $(BIN)/python scripts/make_readme.py

readme: setup
	$(BIN)/python scripts/make_readme.py

bench: setup
	$(BIN)/python -m experiments.bench_foundation

# the docs site, offline (no Quarto): nbdev's processed notebooks rendered by Sphinx + MyST-NB into _site_offline/
docs-setup: setup
	@VENV=$(VENV) DOCS=1 bash scripts/setup.sh

docs: docs-setup
	OMP_NUM_THREADS=1 $(BIN)/python scripts/build_docs.py

# serve _site_offline/ on localhost and check every page in headless Chromium (console errors, images, links)
docs-check: docs
	$(BIN)/python scripts/check_site.py
