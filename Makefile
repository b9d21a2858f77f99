# Two commands for a fresh machine with only Python 3.11+: `make demo` and `make test`.
# Everything installs into .venv from the lock files, so tests, demo and deployment
# run exactly the versions in requirements/*.lock.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-integration lint typecheck demo serve bench lock clean

$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv>=0.4"
	$(UV) pip install --quiet --python $(PY) -r requirements/dev.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## The whole suite: unit, property and integration tests (embedded PostgreSQL unless
## TEST_DATABASE_URL is set), then ruff and mypy.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m ruff check .
	$(PY) -m mypy

test-fast: $(STAMP)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: $(STAMP)
	.ci/cloudtasks.sh
	$(PY) -m pytest -m "integration or cloudtasks" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

demo: $(STAMP)
	$(VENV)/bin/hubspot-sync demo

serve: $(STAMP)
	$(VENV)/bin/hubspot-sync serve

bench: $(STAMP)
	$(PY) bench/run_all.py

## Re-resolve the dependency ranges in pyproject.toml into the lock files.
lock:
	test -x $(UV) || ($(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet "uv>=0.4")
	$(UV) pip compile --quiet --python-version 3.11 pyproject.toml -o requirements/runtime.lock
	$(UV) pip compile --quiet --python-version 3.11 --extra dev pyproject.toml -o requirements/dev.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .build
