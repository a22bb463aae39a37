# Two commands for a fresh machine:
#   make run   - install and run the gateway on the embedded default (memory store,
#                config/example.yaml, config/users.yaml, example upstream on :9001)
#   make test  - install what the tests need (redis-server, chromium, node packages)
#                and run the whole test suite
# and: make bench (BENCH_ARGS=--quick for a 2-minute run) - the benchmark suite
#      make test-container - build the image (podman + runc, local debootstrap base) and check it
#                            running; not part of `make test` (slow, needs root for podman)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test test-container check bench clean

run: $(VENV)/.installed
	$(VENV)/bin/gateway run --config config/example.yaml --example-upstream

test: $(VENV)/.installed-test
	bash scripts/install-test-deps.sh
	$(VENV)/bin/ruff check gateway tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-container: $(VENV)/.installed
	bash scripts/container-test.sh

check: $(VENV)/.installed
	$(VENV)/bin/gateway check config/example.yaml

bench: $(VENV)/.installed-test
	bash scripts/install-bench-deps.sh
	$(PY) -m pip install -q -e '.[fast,test,bench]'
	$(PY) -m bench.run $(BENCH_ARGS)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[fast]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[fast,test]'
	touch $@

clean:
	rm -rf $(VENV) tests/browser/node_modules
