# tegrastats-api: developer commands. `make` alone lists them.
PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
# Serving needs the runtime dependencies only: `make run` and `make install` use a venv of
# their own without the test and development extras (`make test` keeps .venv).
RUN_VENV    ?= .venv-run
NODE_DIR    := tests/node
PORT        ?= 58090
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install venv run-venv node test test-oldest test-stacks lint typecheck run bench soak sdist wheel deb clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.stamp: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $@

venv: $(VENV)/.stamp ## create .venv with the package (editable) and its test tools

$(RUN_VENV)/.stamp: setup.py pyproject.toml
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/python -m pip install -q --upgrade pip
	$(RUN_VENV)/bin/python -m pip install -q -e .
	touch $@

run-venv: $(RUN_VENV)/.stamp ## create .venv-run with the package (editable) and its runtime dependencies only

$(NODE_DIR)/node_modules/.stamp: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node: $(NODE_DIR)/node_modules/.stamp ## install the JavaScript test clients (socket.io-client)

test: venv node ## run the whole test suite in .venv
	$(PY) -m pytest $(PYTEST_ARGS)

STACKS ?=

test-stacks: node ## the whole suite on each JetPack's Python and libraries (tests/stacks/*.txt; STACKS="a b" for some)
	$(PYTHON) tests/stacks/run.py $(STACKS) -- $(PYTEST_ARGS)

test-oldest: node ## the suite on the oldest Python (3.8) with Debian bookworm's libraries (tests/stacks/debian-12.txt)
	$(PYTHON) tests/stacks/run.py debian-12 -- $(PYTEST_ARGS)

lint: venv ## ruff, and vermin: the code must run on Python 3.8 (JetPack 5)
	$(VENV)/bin/ruff check tegrastats_api tests bench
	$(VENV)/bin/vermin -q --no-tips --violations -t=3.8- --backport dataclasses tegrastats_api tests bench

typecheck: venv ## mypy on the package
	$(VENV)/bin/mypy tegrastats_api

SELFTEST_PORT ?= 58099

install: run-venv ## install into .venv-run (runtime only), then start it briefly and run `tegrastats-api test` against it
	@echo "== installed: $(RUN_VENV)/bin/tegrastats-api; self-test on 127.0.0.1:$(SELFTEST_PORT)"
	@$(RUN_VENV)/bin/tegrastats-api run --host 127.0.0.1 --port $(SELFTEST_PORT) --simulate --log-level WARNING & pid=$$!; \
	rc=1; for i in $$(seq 1 40); do \
		if $(RUN_VENV)/bin/tegrastats-api test --host 127.0.0.1 --port $(SELFTEST_PORT) > .selftest.out 2>&1; then rc=0; break; fi; \
		sleep 0.25; \
	done; \
	cat .selftest.out; rm -f .selftest.out; kill $$pid; wait $$pid; exit $$rc

run: run-venv ## serve on port $(PORT) from .venv-run (a simulated AGX Orin, labelled SIMULATED, where there is no Jetson)
	$(RUN_VENV)/bin/tegrastats-api run --port $(PORT)

bench: venv ## measure (a few minutes): parse rate, REST vs hello-world, push delay, CPU, RSS, start-up
	$(PY) bench/run.py

SOAK_MINUTES ?= 10

soak: venv ## 10 min (SOAK_MINUTES=N) at 50 samples/s, 50 push clients coming and going; fails if RSS or fds keep growing
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES)

sdist: venv ## build the sdist, and the wheel from it, into dist/
	$(PY) -m build --outdir dist .

wheel: venv ## build the wheel into dist/
	$(PY) -m pip wheel --no-deps -w dist .

deb: ## build dist/tegrastats-api_<version>_all.deb (debhelper, dh-python: see .ci/run)
	packaging/build-deb.sh

clean: ## remove virtual environments and build output
	rm -rf $(VENV) $(RUN_VENV) .venv-stacks build dist *.egg-info $(NODE_DIR)/node_modules
