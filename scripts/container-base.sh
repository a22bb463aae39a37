#!/usr/bin/env bash
# A local base image for the gateway's Dockerfile, made with debootstrap: Debian bookworm
# (minbase) with its python3 (3.11) and venv. No image registry is contacted.
#
#   scripts/container-base.sh [ENGINE] [IMAGE]   # default: podman localhost/jwt-gateway-base:bookworm
#
# Kept when it exists already; remove the image to rebuild it.
set -euo pipefail

ENGINE="${1:-podman}"
IMAGE="${2:-localhost/jwt-gateway-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if "$ENGINE" image exists "$IMAGE" 2>/dev/null || "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE: present"
  exit 0
fi
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
echo "base image $IMAGE: debootstrap bookworm from $MIRROR (a few minutes)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$MIRROR" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "base image $IMAGE: built"
