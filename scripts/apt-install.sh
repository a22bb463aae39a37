#!/usr/bin/env bash
# apt-install.sh PACKAGE...: install Debian packages for the tests, the benchmark or the container
# build WITHOUT starting their services. Debian starts nginx, PostgreSQL, MariaDB, slapd, HAProxy,
# Caddy and PHP-FPM as system services when they are installed; the tests never use those (they
# start their own instances on free ports), so a developer's laptop must not gain them. A
# policy-rc.d that answers 101 ("action forbidden") is what Debian's invoke-rc.d consults before
# starting anything; it is in place only for the duration of the install, and a policy-rc.d the
# machine already had is put back afterwards.
set -euo pipefail
[ $# -gt 0 ] || exit 0
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then saved=$(mktemp); $SUDO cp -p "$policy" "$saved"; fi
restore() {
  if [ -n "$saved" ]; then $SUDO cp -p "$saved" "$policy"; rm -f "$saved"; else $SUDO rm -f "$policy"; fi
}
trap restore EXIT
printf '#!/bin/sh\n# written by jwt-gateway scripts/apt-install.sh for the duration of an install\nexit 101\n' \
  | $SUDO tee "$policy" >/dev/null
$SUDO chmod 755 "$policy"
echo "installing (services not started): $*"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$@"
