#!/usr/bin/env bash
# `make test-container`: run docs/deployment.md's container commands (build, check, run) on a local
# debootstrap base, then check the image running.
# CONTAINER_ENGINE=docker uses Docker with the same Dockerfile (base built the same way);
# the default is podman with runc, installed by scripts/install-container-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE="${CONTAINER_ENGINE:-podman}"
BASE="${BASE_IMAGE:-localhost/jwt-gateway-base:bookworm}"
IMAGE=jwt-gateway  # the name docs/deployment.md builds
# Explicit limits: podman's defaults (nofile 1048576) exceed what an unprivileged or nested
# host allows ("error setting rlimit type 7/6"), so nofile is this shell's hard limit (at most
# 65536) and nproc a modest 4096 (the gateway needs a few threads per worker).
NOFILE="$(ulimit -Hn)"
if [ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 65536 ]; then NOFILE=65536; fi
NPROC="${CONTAINER_NPROC:-4096}"
ENGINE_CMD=("$ENGINE")
RUNTIME=()
if [ "$ENGINE" = podman ]; then
  bash scripts/install-container-deps.sh
  ENGINE_CMD=(podman --runtime runc)
  RUNTIME=(--runtime runc)
fi
bash scripts/container-base.sh "$ENGINE" "$BASE"

SECRET=()
CA="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ -s "$CA" ]; then SECRET=(--secret "id=cacert,src=$CA"); fi

# 1. The container commands of docs/deployment.md (the block marked `docs-test: container $ENGINE`),
# run as written. The engine is a shell function that adds only what this host needs, each change
# printed with the command: the build gets the local base (no registry) and the CA bundle; the
# serving `run` runs detached on the host's network on a free port instead of `-p 8080:8080`.
DOC_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DOC_NAME="jwt-gateway-docs-$DOC_PORT"
documented() {
  local bin="$1" pre=() out=() a skip=0 serving=0
  shift
  while [ "${1:-}" = --runtime ]; do pre+=("$1" "$2"); shift 2; done
  local sub="$1"
  shift
  case "$sub" in
    build) out=(build --network host "${SECRET[@]}" --build-arg "BASE_IMAGE=$BASE" "$@") ;;
    run)
      for a in "$@"; do if [ "$a" = -p ]; then serving=1; fi; done
      if [ "$serving" = 1 ]; then
        out=(run -d --name "$DOC_NAME" --network host -e "GATEWAY_PORT=$DOC_PORT")
        for a in "$@"; do
          if [ "$skip" = 1 ]; then skip=0; continue; fi
          if [ "$a" = -p ]; then skip=1; continue; fi
          out+=("$a")
        done
      else
        out=(run "$@")
      fi ;;
    *) out=("$sub" "$@") ;;
  esac
  echo "+ $bin ${pre[*]} ${out[*]}" >&2
  command "$bin" "${pre[@]}" "${out[@]}"
}
podman() { documented podman "$@"; }
docker() { documented docker "$@"; }
BLOCK="$(python3 scripts/docs_blocks.py container "$ENGINE" docs/deployment.md)"
echo "running docs/deployment.md's $ENGINE commands on $BASE"
( eval "$BLOCK" )
trap '"$ENGINE" rm -f "$DOC_NAME" >/dev/null 2>&1 || true' EXIT
.venv/bin/python - "$DOC_PORT" <<'PY'
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
            assert resp.status == 200
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
body = json.dumps({"username": "alice", "password": "alice-password"}).encode()
req = urllib.request.Request(base + "/auth/token", data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as resp:
    assert "access" in json.loads(resp.read())
print("ok   the documented container serves /healthz and a login")
PY
"${ENGINE_CMD[@]}" stop -t 30 "$DOC_NAME" >/dev/null

# 2. The image the docs built, run the way production runs it, checked in detail.
.venv/bin/python scripts/container_check.py --engine "$ENGINE" "${RUNTIME[@]}" \
  --image "$IMAGE" --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC"
