# Two commands for a fresh machine:
#   make run   - install and run the gateway on the embedded default (memory store,
#                config/example.yaml, config/users.yaml, example upstream on :9001)
#   make test  - install what the tests need (Debian packages, node packages, the test extra),
#                build the compiled hot path (make compiled) and run the whole test suite on it: in
#                parallel (pytest-xdist, TEST_WORKERS per core), then the tests marked serial alone,
#                then tests/unit and tests/http again on the pure-Python modules (scripts/run-tests.sh)
# Python packages come from the committed locks in locks/ (exact versions with hashes, pip and
# setuptools included), so a fresh machine installs what the last green run tested; pyproject.toml
# keeps the ranges for people who install the package.
# and: make upgrade - refresh the locks to the newest releases within pyproject.toml's ranges, then run the suite
#      make bench (BENCH_ARGS=--quick for a 2-minute run) - the benchmark suite
#      make mutation - mutation testing of the security-critical modules with the quick test layers
#                      (docs/mutation.md); fails below 90% of the mutants killed
#      make compiled - compile the hot modules of the proxied request with mypyc, in place (scripts/compile.py;
#                      docs/performance.md#compiled-hot-path); make clean-compiled removes them (GATEWAY_PURE=1
#                      ignores them without removing)
#      make test-container - build the image (podman + runc, local debootstrap base) and check it
#                            running; not part of `make test` (slow, needs root for podman)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TEST_WORKERS ?= auto

.PHONY: run test test-container check bench mutation upgrade locks clean compiled clean-compiled

run: $(VENV)/.installed
	$(VENV)/bin/gateway run --config config/example.yaml --example-upstream

test: $(VENV)/.installed-test
	bash scripts/install-test-deps.sh
	$(VENV)/bin/ruff check gateway tests bench
	$(VENV)/bin/mypy
	$(MAKE) compiled
	PY=$(PY) TEST_WORKERS=$(TEST_WORKERS) GATEWAY_TEST_BUILD=compiled PURE_LAYERS="tests/unit tests/http" \
	  bash scripts/run-tests.sh $(PYTEST_ARGS)

# The compiled build: mypyc (shipped with mypy, in the test lock) compiles pyproject.toml's [tool.gateway.compiled]
# modules into extensions beside their sources; it needs gcc and Python's headers (scripts/install-test-deps.sh).
# Rebuilt when any module of the package changes: compiled code relies on the types of what it imports.
# A build that `compile.py check` finds stale in ways make cannot see (an extension of a module no longer listed) is
# rebuilt too.
compiled: $(VENV)/.installed-test
	@$(PY) scripts/compile.py check 2>/dev/null || rm -f build/compiled.json
	@$(MAKE) --no-print-directory build/compiled.json

build/compiled.json: $(VENV)/.installed-test pyproject.toml scripts/compile.py $(shell find gateway -name '*.py')
	$(PY) scripts/compile.py build

clean-compiled:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) scripts/compile.py clean

test-container: $(VENV)/.installed
	bash scripts/container-test.sh

check: $(VENV)/.installed
	$(VENV)/bin/gateway check config/example.yaml

bench: $(VENV)/.installed-bench
	bash scripts/install-bench-deps.sh
	$(PY) -m bench.run $(BENCH_ARGS)

# mutmut copies gateway/, tests/ and what [tool.mutmut] also_copy names into mutants/ and mutates there; for each
# mutant it runs only the selected tests (pyproject.toml's [tool.mutmut]) that reach the mutated function.
# GATEWAY_PURE=1: the mutated sources, never a compiled extension of `make compiled` copied along with them.
# A fresh mutants/ each time: results of an older tree never count. MUTMUT_ARGS='--max-children 3' for more workers.
mutation: $(VENV)/.installed-mutation
	bash scripts/install-test-deps.sh
	rm -rf mutants
	GATEWAY_PURE=1 $(VENV)/bin/mutmut run $(MUTMUT_ARGS) > mutation.log 2>&1 || (tail -c 3000 mutation.log; exit 1)
	$(PY) scripts/mutation_score.py --min 90

# Every install: the locked pip and setuptools first, then the lock's exact files (--require-hashes),
# then the project itself without resolving anything (--no-deps, built with the locked setuptools).
LOCKED = $(PY) -m pip install -q --require-hashes --no-deps -r
SELF   = $(PY) -m pip install -q --no-deps --no-build-isolation -e .

$(VENV)/.installed: locks/pip.txt locks/run.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(LOCKED) locks/pip.txt
	$(LOCKED) locks/run.txt
	$(SELF)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed locks/test.txt
	$(LOCKED) locks/test.txt
	$(SELF)
	touch $@

$(VENV)/.installed-mutation: $(VENV)/.installed-test locks/mutation.txt
	$(LOCKED) locks/mutation.txt
	$(SELF)
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-test locks/bench.txt
	$(LOCKED) locks/bench.txt
	$(SELF)
	touch $@

# The locks, compiled by pip-tools (in a virtualenv of its own, so it never enters the project's) from
# pyproject.toml's ranges and locks/pip.in, with every file's hash. `make locks` re-resolves only what
# pyproject.toml changed; `make upgrade` takes the newest releases and runs the whole suite on them.
COMPILE = $(VENV)-tools/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
          --no-emit-index-url --no-emit-find-links $(COMPILE_ARGS)
locks:
	test -x $(VENV)-tools/bin/pip-compile || ($(PYTHON) -m venv $(VENV)-tools && \
	  $(VENV)-tools/bin/pip install -q --require-hashes -r locks/pip.txt && \
	  $(VENV)-tools/bin/pip install -q --require-hashes -r locks/tools.txt)
	$(COMPILE) -o locks/pip.txt locks/pip.in
	$(COMPILE) -o locks/tools.txt locks/tools.in
	$(COMPILE) --extra fast --extra otel -o locks/run.txt pyproject.toml
	$(COMPILE) --extra fast --extra otel --extra test -o locks/test.txt pyproject.toml
	$(COMPILE) --extra fast --extra otel --extra test --extra bench -o locks/bench.txt pyproject.toml
	$(COMPILE) --extra fast --extra otel --extra test --extra mutation -o locks/mutation.txt pyproject.toml

upgrade:
	$(MAKE) locks COMPILE_ARGS=--upgrade
	$(MAKE) test

clean: clean-compiled
	rm -rf $(VENV) $(VENV)-tools tests/browser/node_modules mutants mutation.log
