"""The deploy files against their published schemas, offline.

- deploy/k8s/*.yaml: every document against the Kubernetes OpenAPI schema of K8S_VERSION, strict
  (an unknown field is an error, as `kubectl apply --validate=strict` makes it), with the schemas
  kubernetes-validate ships; kustomization.yaml has no such schema: it must list exactly the other
  files of the folder.
- deploy/docker-compose.yml: against the Compose specification's schema that check-jsonschema
  ships (`check-jsonschema --builtin-schema vendor.compose-spec`).

Each with a negative control: a deliberately broken copy fails.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
K8S_VERSION = "1.33.0"  # named in docs/deployment.md; kubernetes-validate ships 1.25 to 1.37
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_problems(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {exc.message} at {list(exc.path)}"
    return None


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schema(path: Path):
    docs = documents(path)
    assert docs, f"{path.name} holds no document"
    problems = [p for p in map(k8s_problems, docs) if p]
    assert not problems, "\n".join(problems)


def test_the_version_is_the_documented_one():
    assert f"Kubernetes {K8S_VERSION.rsplit('.', 1)[0]}" in (ROOT / "docs" / "deployment.md").read_text()


def _deployment() -> dict[str, Any]:
    return next(d for d in documents(K8S / "deployment.yaml") if d["kind"] == "Deployment")


@pytest.mark.parametrize("breakage", ["unknown field", "wrong type", "missing required", "bad probe"])
def test_a_broken_manifest_fails(breakage: str):
    doc = copy.deepcopy(_deployment())
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if breakage == "unknown field":
        doc["spec"]["replica"] = 2  # a typo of replicas
    elif breakage == "wrong type":
        doc["spec"]["replicas"] = "two"
    elif breakage == "missing required":
        del doc["spec"]["selector"]
    else:
        container["readinessProbe"]["httpGet"]["pathh"] = container["readinessProbe"]["httpGet"].pop("path")
    assert k8s_problems(_deployment()) is None
    assert k8s_problems(doc) is not None


def test_kustomization_lists_exactly_the_manifests():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"].startswith("kustomize.config.k8s.io/")
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources)), f"listed twice: {resources}"
    assert sorted(resources) == [p.name for p in MANIFESTS], (
        f"kustomization.yaml lists {sorted(resources)}; the folder holds {[p.name for p in MANIFESTS]}")


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_compose_file_matches_the_compose_spec():
    done = check_compose(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("breakage", ["unknown service key", "wrong type"])
def test_a_broken_compose_file_fails(breakage: str, tmp_path: Path):
    compose = yaml.safe_load(COMPOSE.read_text())
    service = compose["services"]["gateway"]
    if breakage == "unknown service key":
        service["restart_policy"] = "always"  # belongs under deploy:, or `restart:`
    else:
        service["environment"] = 42
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(compose))
    done = check_compose(broken)
    assert done.returncode == 1 and "Schema validation errors" in done.stdout + done.stderr, done.stdout + done.stderr
