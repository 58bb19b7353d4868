# The README's two commands:  `make run`  (the main job)  and  `make test`  (the tests).
# Both start with the idempotent set-up in scripts/setup.sh.
VENV ?= .venv
BIN := $(VENV)/bin
TIER ?= cpu
OUT ?= runs/demo

.PHONY: setup run test nbtest pytest export clean-nbs readme bench

setup:
	@VENV=$(VENV) bash scripts/setup.sh

run: setup
	$(BIN)/ssl_learn demo --tier $(TIER) --out $(OUT)

test: setup
	# two notebooks at a time, one thread each: two 2-thread processes on 2 cores fight over them
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2
	$(BIN)/python -m pytest -q tests

# notebook development
export: setup
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean && $(BIN)/python scripts/make_readme.py

readme: setup
	$(BIN)/python scripts/make_readme.py

bench: setup
	$(BIN)/python scripts/bench_foundation.py
