#!/usr/bin/env bash
# The suite as `make test` runs it: two pytest passes over the same selection, the arguments given
# (make test PYTEST_ARGS='...' passes them here; TEST_WORKERS=0 runs pass 1 without workers).
#  1. everything but the tests marked `serial`, in parallel: pytest-xdist with one worker per core
#     (TEST_WORKERS, default auto), --dist loadfile: a file's tests stay on one worker, so a module's
#     servers are started once; each worker starts its own session servers (Redis, PostgreSQL,
#     MariaDB, slapd) on ports from tests/support/ports.py, which never gives two processes one port;
#  2. the tests marked `serial` (they measure time, memory or CPU), one at a time, alone on the machine;
#  3. with PURE_LAYERS (make test: "tests/unit tests/http"), those layers again in parallel on the pure-Python
#     modules (GATEWAY_PURE=1: the sources even where `make compiled` put extensions beside them), so the
#     fallback stays tested; the arguments given, if any, select the tests of this pass instead.
# Exit status: the first failure's; "no tests collected" (5) in one pass is fine when the other ran some.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
status=0
"$PY" -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-auto}" --dist loadfile --serial=exclude "$@"
parallel=$?
"$PY" -m pytest -q -p no:cacheprovider --serial=only "$@"
serial=$?
pure=5
if [ -n "${PURE_LAYERS:-}" ]; then
  if [ "$#" -gt 0 ]; then set -- --serial=exclude "$@"; else read -ra layers <<< "$PURE_LAYERS"; set -- --serial=exclude "${layers[@]}"; fi
  GATEWAY_PURE=1 GATEWAY_TEST_BUILD=pure "$PY" -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-auto}" --dist loadfile "$@"
  pure=$?
fi
for pass in $parallel $serial $pure; do
  if [ "$pass" -ne 0 ] && [ "$pass" -ne 5 ] && [ "$status" -eq 0 ]; then status=$pass; fi
done
if [ "$parallel" -eq 5 ] && [ "$serial" -eq 5 ]; then status=5; fi
exit "$status"
