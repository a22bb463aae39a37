# syntax=docker/dockerfile:1
# The gateway image: official python:3.11-slim, a virtualenv built in a throwaway
# stage, run as an unprivileged user. The image carries no configuration and no
# secret: mount the config at /etc/gateway/config.yaml (its users file beside it)
# and pass secrets as environment variables. See docs/deployment.md.
#
#   docker build -t jwt-gateway .
#   docker run --rm -p 8080:8080 -e GATEWAY_SECRET=... \
#     -v "$PWD/config/example.yaml:/etc/gateway/config.yaml:ro" \
#     -v "$PWD/config/users.yaml:/etc/gateway/users.yaml:ro" jwt-gateway

#
# Any base with python3 (3.11+), its venv module, groupadd and useradd will do: where no image
# registry is reachable, scripts/container-base.sh makes one with debootstrap and
#   podman --runtime runc build --build-arg BASE_IMAGE=localhost/jwt-gateway-base:bookworm \
#     --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt -t jwt-gateway .
# (the cacert secret: a CA bundle pip should trust, e.g. a TLS-inspecting proxy's; optional).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.m[d]: copied when present (setuptools reads it as the long description).
COPY pyproject.toml README.m[d] ./
COPY locks/pip.txt locks/run.txt ./locks/
COPY gateway ./gateway
RUN --mount=type=secret,id=cacert,required=false \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r locks/pip.txt \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r locks/run.txt \
 && /opt/venv/bin/pip install --no-deps --no-build-isolation .

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
# slim has no curl: urllib raises (exit 1) on a refused connection or any non-2xx answer.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT', '8080'), timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway"]
CMD ["run", "--config", "/etc/gateway/config.yaml"]
