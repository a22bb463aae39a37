#!/usr/bin/env bash
# `make test-container`: build the image from a local debootstrap base and check it running.
# CONTAINER_ENGINE=docker uses Docker with the same Dockerfile (base built the same way);
# the default is podman with runc, installed by scripts/install-container-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${CONTAINER_ENGINE:-podman}"
BASE="${BASE_IMAGE:-localhost/jwt-gateway-base:bookworm}"
IMAGE="${IMAGE:-localhost/jwt-gateway:test}"
# Explicit limits: podman's defaults (nofile 1048576) exceed what an unprivileged or nested
# host allows ("error setting rlimit type 7/6"), so nofile is this shell's hard limit (at most
# 65536) and nproc a modest 4096 (the gateway needs a few threads per worker).
NOFILE="$(ulimit -Hn)"
if [ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 65536 ]; then NOFILE=65536; fi
NPROC="${CONTAINER_NPROC:-4096}"
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")
ENGINE_CMD=("$ENGINE")
RUNTIME=()
FORMAT=()
if [ "$ENGINE" = podman ]; then
  bash scripts/install-container-deps.sh
  ENGINE_CMD=(podman --runtime runc)
  RUNTIME=(--runtime runc)
  FORMAT=(--format docker)  # the OCI format has no HEALTHCHECK
fi
bash scripts/container-base.sh "$ENGINE" "$BASE"

SECRET=()
CA="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ -s "$CA" ]; then SECRET=(--secret "id=cacert,src=$CA"); fi
echo "building $IMAGE on $BASE with $ENGINE"
"${ENGINE_CMD[@]}" build "${FORMAT[@]}" --network host "${ULIMITS[@]}" "${SECRET[@]}" \
  --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" .

.venv/bin/python scripts/container_check.py --engine "$ENGINE" "${RUNTIME[@]}" \
  --image "$IMAGE" --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC"
