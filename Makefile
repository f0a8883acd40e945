# RFLocal: `make run` serves the workbench, `make test` runs the tests.
# Both set up a fresh machine first (system libraries, .venv, pinned packages).
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# This machine only; `make run ADDRESS=0.0.0.0` serves other machines, which needs sign-in configured
# or RFLOCAL_AUTH=none (README: "Serving other machines").
ADDRESS ?= 127.0.0.1

.PHONY: setup setup-test run test test-fast demo-scene demo-model clean

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

run: setup
	$(PY) -m rflocal_core serve --address $(ADDRESS) --port $(PORT)

# The suite runs in 2 pytest-xdist workers, one per core; each test file runs whole on one worker
# (tests/conftest.py: the browser tests together, the heaviest files first). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
TEST_ARGS := -n $(TEST_WORKERS) --dist loadfile

test: setup-test
	$(PY) -m pytest -q $(TEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q $(TEST_ARGS) -m "not browser"

demo-scene: setup
	$(PY) -m rflocal_core scene build --procedural --seed 7 --site-seed 0 --name demo

# Rebuild the shipped demo models, example files and test split (assets/demo/demo-test) in assets/
# (about 8 minutes on 2 cores).
demo-model: setup
	$(PY) -m rflocal_core demo build

clean:
	rm -rf $(VENV) .pytest_cache pages/components/boxmap/node_modules
