"""The Dockerfile, the compose file and the Kubernetes manifests agree with the gateway they ship.

No Docker engine or cluster runs here, so these tests parse the files and check
every port, path, environment variable, command and endpoint they name against
the real gateway: its CLI parser, its config validation, its users file loader.
Then they go one step further than parsing: they lay out the files the
container would see (the compose volumes, the Kubernetes projected volume),
start the real ``gateway run`` with the container's command and environment
(only host, port and Redis pointed at the test's own), and call the health
check and the probes against it.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest
import yaml
from yarl import URL

from gateway.cli import build_parser
from gateway.config import ConfigError, GatewayConfig, parse_config, read_yaml
from gateway.sources.users import load_users
from tests.conftest import ROOT, free_port, gateway_command, wait_for_port

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CONFIG_PATH = "/etc/gateway/config.yaml"  # the documented mount point
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


# -- Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def one(stage: list[tuple[str, str]], word: str) -> str:
    found = [args for w, args in stage if w == word]
    assert len(found) == 1, f"expected one {word}, found {found}"
    return found[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in final_stage():
        if word == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))  # type: ignore[misc]
    return env


def healthcheck_command() -> list[str]:
    args = one(final_stage(), "HEALTHCHECK")
    assert " CMD " in f" {args} ", "HEALTHCHECK needs a CMD"
    return json.loads(args.split(" CMD ", 1)[1])


def image_command() -> list[str]:
    stage = final_stage()
    return json.loads(one(stage, "ENTRYPOINT")) + json.loads(one(stage, "CMD"))


def parse_cli(argv: list[str]) -> Any:
    assert argv[0] == "gateway", argv
    return build_parser().parse_args(argv[1:])


def test_image_is_official_slim_python_and_runs_unprivileged():
    bases = [args.split()[0] for word, args in dockerfile() if word == "FROM"]
    assert bases and all(base == "${BASE_IMAGE}" for base in bases), bases  # a build argument, for local bases
    assert ("ARG", "BASE_IMAGE=python:3.11-slim") in dockerfile()  # by default the official slim image
    user = one(final_stage(), "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "a numeric non-root uid, so Kubernetes can check runAsNonRoot"


def test_image_listens_where_the_config_says():
    env = image_env()
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert one(final_stage(), "EXPOSE") == env["GATEWAY_PORT"] == "8080"


def test_image_command_is_a_real_cli_subcommand():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["gateway"] == "gateway.cli:main"
    args = parse_cli(image_command())
    assert args.command == "run" and args.config == CONFIG_PATH


def test_healthcheck_uses_python_urllib_on_healthz():
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"] and "urllib.request" in command[2]
    assert "/healthz" in command[2] and "GATEWAY_PORT" in command[2]
    assert GatewayConfig.model_fields["endpoints"].default.healthz == "/healthz"


def dockerignore_allows(path: str) -> bool:
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(Path(p).name, pattern) for p in prefixes):
            allowed = negate
    return allowed


def test_dockerignore_sends_what_the_build_copies_and_nothing_secret():
    sources = []
    for word, args in dockerfile():
        if word == "COPY" and not args.startswith("--from"):
            sources += [s for s in args.split()[:-1] if not s.startswith("--")]
    matched = [p for s in sources for p in ROOT.glob(s)]
    assert {p.name for p in matched} >= {"pyproject.toml", "gateway"}
    for path in matched:
        assert dockerignore_allows(str(path.relative_to(ROOT))), path
    for private in [".venv/bin/python", ".git/config", "tests/conftest.py", "config/users.yaml", "deploy/k8s/secret.yaml",
                    "gateway/__pycache__/app.cpython-311.pyc",
                    "gateway/target.cpython-311-x86_64-linux-gnu.so"]:  # a checkout's compiled build (make compiled)
        assert not dockerignore_allows(private), private


# -- what a container sees ------------------------------------------------------------


def env_references(config_text: str) -> dict[str, bool]:
    """Variables a config interpolates (in its values, as the gateway does), and whether each has a default."""
    found: dict[str, bool] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            found.update((m.group(1), m.group(2) is not None) for m in _ENV_REF.finditer(node))

    walk(yaml.safe_load(config_text))
    return found


def load_with_env(config_file: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    """parse_config as the container would run it: only the container's variables are set."""
    for name in env_references(config_file.read_text()):
        monkeypatch.delenv(name, raising=False)
        if name in env:
            monkeypatch.setenv(name, env[name])
    return parse_config(read_yaml(config_file), config_file.parent)


@contextmanager
def running_gateway(config_file: Path, argv: list[str], env: dict[str, str]) -> Iterator[str]:
    """The real ``gateway run`` with the container's arguments and environment; yields its base URL."""
    port = free_port()
    env = {**os.environ, **env, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port)}
    args = [str(config_file) if a == CONFIG_PATH else a for a in argv[1:]]
    log = open(config_file.parent / "gateway.log", "wb")
    proc = subprocess.Popen([*gateway_command(), *args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60)  # two workers each import the whole gateway: slow on a loaded machine
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run_healthcheck(port: int) -> int:
    command = healthcheck_command()
    argv = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    return subprocess.run(argv, env={**os.environ, "GATEWAY_PORT": str(port)}, timeout=20).returncode


async def get_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status


# -- docker compose -------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """Image ENV plus the service's environment; ``${VAR:?...}`` (set by the operator) gets a test value."""
    env = dict(image_env())
    for name, value in service["environment"].items():
        value = str(value)
        if re.fullmatch(rf"\$\{{{name}:\?.+\}}", value):
            value = "operator-supplied-value-that-is-long-enough-0123456789"
        assert "${" not in value, f"{name}: unexpected interpolation {value}"
        env[name] = value
    return env


def compose_mounts(service: dict[str, Any], root: Path) -> Path:
    """Copy the service's bind mounts under ``root`` as the container sees them; returns the config path."""
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        assert (DEPLOY / source).is_file(), f"{source} does not exist"
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / source, dest)
    return root / CONFIG_PATH.lstrip("/")


def test_compose_runs_two_gateways_redis_and_the_example_upstream():
    services = compose()["services"]
    assert set(services) == {"gateway", "redis", "upstream"}
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] == 2
    assert gateway["build"]["dockerfile"] == "Dockerfile" and (DEPLOY / gateway["build"]["context"] / "Dockerfile").is_file()
    assert parse_cli(["gateway", *gateway["command"]]).config == CONFIG_PATH
    assert "redis" in gateway["depends_on"] and "upstream" in gateway["depends_on"]
    upstream = services["upstream"]["entrypoint"]
    assert upstream[:3] == ["python", "-m", "gateway.example_upstream"] and upstream[upstream.index("--host") + 1] == "0.0.0.0"


def test_compose_config_matches_ports_services_and_endpoints(tmp_path, monkeypatch):
    services = compose()["services"]
    gateway = services["gateway"]
    config_file = compose_mounts(gateway, tmp_path)
    env = compose_env(gateway)
    missing = [n for n, has_default in env_references(config_file.read_text()).items() if not has_default and n not in env]
    assert not missing, f"the mounted config needs {missing}, which the compose file does not set"
    config = load_with_env(config_file, env, monkeypatch)
    assert config.users_file == config_file.parent / "users.yaml" and len(load_users(config.users_file)) >= 1
    assert config.listen.host == "0.0.0.0"
    assert [str(config.listen.port)] == [p.rsplit(":", 1)[1] for p in gateway["ports"]]
    assert config.store.backend == "redis"
    redis_url = URL(config.store.url or "")
    assert (redis_url.host, redis_url.port) == ("redis", 6379)
    upstream_port = services["upstream"]["entrypoint"][services["upstream"]["entrypoint"].index("--port") + 1]
    assert {(URL(r.upstream).host, str(URL(r.upstream).port)) for r in config.routes} == {("upstream", upstream_port)}
    assert config.endpoints.healthz == "/healthz"  # what the image's HEALTHCHECK calls
    assert any(r.websocket and r.websocket_token.query_param for r in config.routes)


async def test_compose_gateway_starts_answers_probes_and_routes(tmp_path, redis_url, upstream):
    gateway = compose()["services"]["gateway"]
    config_file = compose_mounts(gateway, tmp_path)
    env = {**compose_env(gateway), "REDIS_URL": redis_url, "UPSTREAM_URL": upstream}
    with running_gateway(config_file, ["gateway", *gateway["command"]], env) as base:
        port = URL(base).port
        assert port is not None and run_healthcheck(port) == 0
        assert await get_status(f"{base}/readyz") == 200
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/auth/token", json={"username": "alice", "password": "alice-password"}) as resp:
                assert resp.status == 200
                token = (await resp.json())["access"]
            async with session.get(f"{base}/api/orders", headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200 and (await resp.json())["headers"]["X-User-Id"] == "alice"
    assert run_healthcheck(port) != 0  # stopped: the health check must fail, or it proves nothing


# -- Kubernetes -----------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = set(kustomization["resources"])
    assert files == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}, "kustomization lists every manifest"
    docs = [doc for name in sorted(files) for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def gateway_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = find(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    return container


def secret_data(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    return find(docs, "Secret", name)["stringData"]


def k8s_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    env = dict(image_env())
    for var in gateway_container(docs)["env"]:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            data = secret_data(docs, ref["name"])
            assert ref["key"] in data, f"{var['name']}: Secret {ref['name']} has no key {ref['key']}"
            env[var["name"]] = data[ref["key"]]
    return env


def k8s_mounts(docs: list[dict[str, Any]], root: Path) -> Path:
    """Lay out the gateway's volumes (ConfigMap/Secret items) under ``root``; returns the config path."""
    pod = find(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in gateway_container(docs)["volumeMounts"]:
        volume = volumes[mount["name"]]
        sources = volume.get("projected", {}).get("sources", [])
        sources += [{"configMap": volume["configMap"]}] if "configMap" in volume else []
        sources += [{"secret": {**volume["secret"], "name": volume["secret"]["secretName"]}}] if "secret" in volume else []
        for source in sources:
            kind, ref = next(iter(source.items()))
            data = find(docs, "ConfigMap", ref["name"])["data"] if kind == "configMap" else secret_data(docs, ref["name"])
            for item in ref["items"]:
                assert item["key"] in data, f"{kind} {ref['name']} has no key {item['key']}"
                dest = root / mount["mountPath"].lstrip("/") / item["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(data[item["key"]])
    return root / CONFIG_PATH.lstrip("/")


def test_k8s_deployment_runs_the_cli_with_the_mounted_config(tmp_path):
    docs = manifests()
    container = gateway_container(docs)
    args = parse_cli(["gateway", *container["args"]])
    assert args.command == "run" and args.config == CONFIG_PATH
    assert "command" not in container, "the image's ENTRYPOINT (gateway) must stay"
    config_file = k8s_mounts(docs, tmp_path)
    assert config_file.is_file() and (config_file.parent / "users.yaml").is_file()
    assert len(load_users(config_file.parent / "users.yaml")) >= 1
    entries = yaml.safe_load((config_file.parent / "users.yaml").read_text())["users"].values()
    assert all(entry.get("disabled") is True for entry in entries), "placeholder users must not be able to log in"


def test_k8s_config_ports_probes_and_services_agree(tmp_path, monkeypatch):
    docs = manifests()
    container = gateway_container(docs)
    config_file = k8s_mounts(docs, tmp_path)
    env = k8s_env(docs)
    missing = [n for n, has_default in env_references(config_file.read_text()).items() if not has_default and n not in env]
    assert not missing, f"the ConfigMap's config needs {missing}, which the Deployment does not set"
    with pytest.raises(ConfigError, match="example secret"):  # the Secret's placeholder must be replaced
        load_with_env(config_file, env, monkeypatch)
    config = load_with_env(config_file, {**env, "GATEWAY_SECRET": "a-real-secret-" + "x" * 40}, monkeypatch)
    assert config.users_file == config_file.parent / "users.yaml"
    (port,) = container["ports"]
    assert port["containerPort"] == config.listen.port and config.listen.host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": config.endpoints.healthz, "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": config.endpoints.readyz, "port": port["name"]}
    assert container["startupProbe"]["httpGet"]["path"] == config.endpoints.healthz
    service = find(docs, "Service", "gateway")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    redis_url = URL(config.store.url or "")
    assert config.store.backend == "redis" and redis_url.host is not None
    assert redis_url.port in [p["port"] for p in find(docs, "Service", redis_url.host)["spec"]["ports"]]
    for route in config.routes:  # every upstream is a Service of these manifests, on a port it serves
        upstream = URL(route.upstream)
        assert upstream.port in [p["port"] for p in find(docs, "Service", upstream.host or "")["spec"]["ports"]]


def test_k8s_selectors_match_their_pods():
    docs = manifests()
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] == "Deployment"}
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pods[deployment["metadata"]["name"]].items()
    for doc in docs:
        if doc["kind"] == "Service":
            selector = doc["spec"]["selector"]
        elif doc["kind"] == "PodDisruptionBudget":
            selector = doc["spec"]["selector"]["matchLabels"]
        else:
            continue
        targets = [name for name, labels in pods.items() if selector.items() <= labels.items()]
        assert len(targets) == 1, f"{doc['kind']}/{doc['metadata']['name']} selects {targets}"
        if doc["kind"] == "Service":
            (pod,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == targets[0]]
            names = {p["name"] for c in pod["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
            assert {p["targetPort"] for p in doc["spec"]["ports"]} <= names


def test_k8s_pods_are_non_root_read_only_and_sized():
    docs = manifests()
    image_uid = int(one(final_stage(), "USER").split(":")[0])
    assert find(docs, "Deployment", "gateway")["spec"]["replicas"] >= 2
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        if deployment["metadata"]["name"] in {"gateway", "example-upstream"}:
            assert pod["securityContext"]["runAsUser"] == image_uid
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_k8s_secret_is_an_obvious_placeholder():
    data = secret_data(manifests(), "gateway-secrets")
    assert "CHANGE-ME" in data["GATEWAY_SECRET"] and len(data["GATEWAY_SECRET"].encode()) >= 32


def test_k8s_example_upstream_serves_the_port_its_service_targets():
    docs = manifests()
    (container,) = find(docs, "Deployment", "example-upstream")["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["python", "-m", "gateway.example_upstream"]
    assert [int(command[command.index("--port") + 1])] == [p["containerPort"] for p in container["ports"]]


async def test_k8s_gateway_answers_its_probes(tmp_path, redis_url):
    docs = manifests()
    container = gateway_container(docs)
    config_file = k8s_mounts(docs, tmp_path)
    with running_gateway(config_file, ["gateway", *container["args"]], {**k8s_env(docs), "REDIS_URL": redis_url}) as base:
        assert await get_status(base + container["livenessProbe"]["httpGet"]["path"]) == 200
        assert await get_status(base + container["readinessProbe"]["httpGet"]["path"]) == 200


# -- the ops guide ----------------------------------------------------------------------


def test_ops_guide_links_resolve():
    guide = ROOT / "docs" / "deployment.md"
    text = guide.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("../deploy/") for link in local), "the guide links the files it talks about"
    for link in local:
        assert (guide.parent / link).exists(), link
    for must in (CONFIG_PATH, "/healthz", "/readyz", "GATEWAY_SECRET", "REDIS_URL"):
        assert must in text, must
    pointer = (DEPLOY / "README.md").read_text()
    assert "../docs/deployment.md" in pointer and (DEPLOY / "../docs/deployment.md").exists()
