# PixelFox — `make run` starts the whole stack on embedded defaults; `make test` runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run run-multinode test lint format bench deps system-deps migrate lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Exact versions with hashes from the lock (pip-tools, compiled from pyproject.toml by `make lock`);
# the package itself on top, without resolving anything again.
$(STAMP): pyproject.toml requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

LOCK_FLAGS := -q --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links

# Refresh the locks after changing dependencies in pyproject.toml (or to take newer releases).
lock: $(STAMP)
	$(BIN)/pip-compile $(LOCK_FLAGS) --upgrade -o requirements.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --upgrade --extra dev -o requirements-dev.lock pyproject.toml

system-deps:
	bash scripts/install-system-deps.sh

deps: system-deps $(STAMP)

run: deps
	$(BIN)/python -m pixelfox.devstack

run-multinode: deps
	$(BIN)/python -m pixelfox.devstack --storage-node=s1

migrate: deps
	$(BIN)/flask --app wsgi db upgrade

test: deps
	bash scripts/install-system-deps.sh browser s3
	bash scripts/check-test-services.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: deps
	bash scripts/install-system-deps.sh s3
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_thumbnails.py
	$(BIN)/python scripts/bench_moves.py
	$(BIN)/python scripts/bench_cluster.py
	$(BIN)/python scripts/bench_admin.py
	$(BIN)/python scripts/bench_s3.py

clean:
	rm -rf $(VENV) var/tmp .pytest_cache test-output
