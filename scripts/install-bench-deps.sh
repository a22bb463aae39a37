#!/usr/bin/env bash
# What the benchmark needs beyond Python packages, installed only when missing:
# Debian's wrk (load generator), nginx-light (the comparison proxy, also in front of the gateway
# with auth_request), haproxy (2.6: the comparison proxy verifying the JWT itself), redis-server, valgrind
# (callgrind: bench.ab --instructions).
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v callgrind_control >/dev/null || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
  bash "$(dirname "$0")/apt-install.sh" "${missing[@]}"
fi
