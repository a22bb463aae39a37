#!/usr/bin/env bash
# What `make test-container` needs, installed only when missing: podman with runc (the
# runtime that works here), and debootstrap for a local base image (no image registry
# is needed). Debian/Ubuntu packages.
set -euo pipefail

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  bash "$(dirname "$0")/apt-install.sh" "${missing[@]}"
fi
