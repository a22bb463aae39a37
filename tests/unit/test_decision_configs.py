"""deploy/decision/: the generated front configs (`gateway decision-config`), and Envoy and Traefik's schemas.

The shipped files are the generator's output for config/example.yaml (a test fails when they differ), and
each front's removal rule is checked against a table written here. Envoy cannot run here (no binary
reachable), so its config is checked, not run (nginx, Caddy, Traefik and HAProxy run in
tests/ops/test_decision_fronts.py):

- Envoy: every key and every ``@type`` of envoy.yaml parsed strictly by Envoy's own protobuf definitions
  (PyPI ``envoy-data-plane``: an unknown field or enum value anywhere, also inside typed_config, fails);
- Traefik: the middlewares validated by Traefik's own schema (npm ``@kubernetes-models/traefik``,
  generated from Traefik's Go types: the validator checks types, its declarations name the fields);
  routers and services field by field against the documented file-provider fields, written here by hand;
- HAProxy: ``haproxy -c`` on the generated files (the Lua loaded, its action registered);
- for these, and nginx and Caddy too: what decision mode relies on (the gateway's decision path, the
  identity headers copied and stripped, the decision endpoint unreachable from outside).
"""
from __future__ import annotations

import copy
import importlib
import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from gateway.config import load_config
from gateway.config.boundary import ClientBoundary, ClientHeaders
from gateway.config.decision import FRONTS as CONFIG_FRONTS
from gateway.decision.configs import render
from gateway.decision.fronts import FRONTS
from gateway.decision.fronts.base import go_canonical, spellings
from tests.support.processes import ROOT

DEPLOY = ROOT / "deploy" / "decision"

pytestmark = pytest.mark.filterwarnings("ignore:Using `@model_validator`")  # envoy-data-plane on pydantic 2.12+

# config/example.yaml's identity headers, and the signed identity header every config strips
IDENTITY = ["X-User-Id", "X-User-Roles", "X-User-Email", "X-User-Tenant", "X-Gateway-Identity"]
# Client headers no app may get, whatever the front (written here, not taken from the gateway's lists)
HOSTILE = ["X-User-Id", "x-user_id", "X_User-Id", "X_USER_ID", "X.User.Id", "x-user.id", "X-User-Admin", "x-auth-user", "X-Gateway_Identity",
           "X-HTTP-Method-Override", "x_http_method_override", "X-Original-URL", "X-Rewrite-URL", "Remote-User",
           "X-Forwarded-User", "X-WEBAUTH-USER", "Forwarded", "True-Client-IP", "X-Original-Host", "X-Forwarded-Prefix"]
HARMLESS = ["Content-Type", "Accept", "Cookie", "User-Agent", "X-Csrf-Token", "X-Userid", "X-Requested-With"]
TRAEFIK_SCHEMA = Path(__file__).parent / "traefik_schema"
# The file provider's documented router and service fields (doc.traefik.io, routing/routers and services).
ROUTER_FIELDS = {"entryPoints", "rule", "ruleSyntax", "priority", "middlewares", "service", "tls", "observability"}
SERVICE_KINDS = {"loadBalancer", "weighted", "mirroring", "failover"}
LOAD_BALANCER_FIELDS = {"servers", "sticky", "healthCheck", "passHostHeader", "responseForwarding",
                        "serversTransport", "strategy"}
SERVER_FIELDS = {"url", "weight", "preservePath"}


# -- Envoy ------------------------------------------------------------------------------------------

def _types(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from [value] if key == "@type" else _types(value)
    elif isinstance(node, list):
        for value in node:
            yield from _types(value)


def envoy_bootstrap(raw: dict[str, Any]) -> Any:
    """``raw`` parsed as Envoy's Bootstrap message; every typed_config's message imported first."""
    from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

    for type_url in set(_types(raw)):
        module, _, name = type_url.removeprefix("type.googleapis.com/").rpartition(".")
        assert hasattr(importlib.import_module(f"envoy_data_plane.{module}"), name), type_url
    return Bootstrap.from_dict(raw)


@pytest.fixture(scope="module")
def envoy() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "envoy.yaml").read_text())


def _filters(envoy: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    hcm = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm, {f["name"]: f["typed_config"] for f in hcm["http_filters"]}


def test_envoy_config_parses_against_envoys_protobuf_definitions(envoy):
    envoy_bootstrap({})  # imports the definitions (and their own import-time warnings) first
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bootstrap = envoy_bootstrap(envoy)
    deprecated = [str(w.message) for w in caught if re.match(r"^\w+\.\w+ is deprecated", str(w.message))]
    assert not deprecated, deprecated  # no deprecated Envoy field either (envoy-data-plane warns of each use)
    assert [c.name for c in bootstrap.static_resources.clusters] == ["gateway", "app"]


@pytest.mark.parametrize("break_it", ["top", "inside_typed_config", "enum"])
def test_envoy_check_is_strict(envoy, break_it):
    """Negative controls: the parse above would notice a misspelt key or value anywhere."""
    broken = copy.deepcopy(envoy)
    hcm, filters = _filters(broken)
    if break_it == "top":
        broken["static_resources"]["clusters"][0]["conect_timeout"] = "1s"
    elif break_it == "inside_typed_config":
        filters["envoy.filters.http.ext_authz"]["http_service"]["authorisation_response"] = {}
    else:
        hcm["path_with_escaped_slashes_action"] = "KEEP_AS_IS"
    with pytest.raises((KeyError, ValueError, TypeError)):
        envoy_bootstrap(broken)


def test_envoy_config_does_what_decision_mode_needs(envoy):
    hcm, filters = _filters(envoy)
    assert list(filters) == ["envoy.filters.http.ext_authz", "envoy.filters.http.router"]
    service = filters["envoy.filters.http.ext_authz"]["http_service"]
    assert service["path_prefix"] == "/auth/decide" and service["server_uri"]["cluster"] == "gateway"
    assert filters["envoy.filters.http.ext_authz"]["failure_mode_allow"] is False
    copied = [p["exact"] for p in service["authorization_response"]["allowed_upstream_headers"]["patterns"]]
    assert copied == [h.lower() for h in IDENTITY]
    # a refusal reaches the client with its body and these: the RFC 9470 challenge, a step-up's 302 Location
    to_client = {p.get("exact") for p in service["authorization_response"]["allowed_client_headers"]["patterns"]}
    assert {"www-authenticate", "location", "cache-control", "content-type", "retry-after"} <= to_client
    # client spoofs removed before routing and the decision, in any case and spelling (Envoy lower-cases keys)
    (mutation,) = hcm["early_header_mutation_extensions"][0]["typed_config"]["mutations"]
    regex = re.compile(mutation["remove_on_match"]["key_matcher"]["safe_regex"]["regex"].replace("(?i)", ""), re.I)
    assert all(regex.match(h.lower()) for h in HOSTILE if "_" not in h)  # names with "_": DROP_HEADER below
    assert not any(regex.match(h.lower()) for h in HARMLESS)
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "DROP_HEADER"
    assert (hcm["normalize_path"], hcm["merge_slashes"]) == (False, False)
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    decide = routes[0]
    assert decide["match"] == {"prefix": "/auth/decide"} and decide["direct_response"] == {"status": 404}
    assert routes[-1]["request_headers_to_remove"] == ["authorization"]


# -- Traefik ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def traefik() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "traefik-dynamic.yml").read_text())["http"]


def _declared(relative: str) -> set[str]:
    """The fields a type of @kubernetes-models/traefik declares (its .d.ts interface)."""
    path = TRAEFIK_SCHEMA / "node_modules" / "@kubernetes-models" / "traefik" / relative
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/install-test-deps.sh (npm ci in tests/unit/traefik_schema)")
    interface = re.search(r"export interface I\w+ \{(.*?)\n\}", path.read_text(), re.S)
    assert interface, path
    return set(re.findall(r'^\s+"(\w+)"\??:', interface.group(1), re.M))


def traefik_middleware_errors(middlewares: dict[str, Any]) -> dict[str, list[str]]:
    """Each middleware against Traefik's schema: unknown fields, then the generated validator's type errors."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/install-test-deps.sh")
    errors: dict[str, list[str]] = {}
    kinds = {"forwardAuth": "traefik.io/v1alpha1/ForwardAuth.d.ts",
             "headers": "github.com/traefik/traefik/v3/pkg/config/dynamic/Headers.d.ts"}
    spec_fields = _declared("traefik.io/v1alpha1/MiddlewareSpec.d.ts")
    for name, spec in middlewares.items():
        errors[name] = [f"unknown middleware {kind}" for kind in spec if kind not in spec_fields]
        errors[name] += [f"{kind}.{field}: unknown field" for kind, body in spec.items() if kind in kinds
                         for field in body if field not in _declared(kinds[kind])]
    run = subprocess.run([node, "check.mjs"], input=json.dumps(middlewares), capture_output=True, text=True,
                         cwd=TRAEFIK_SCHEMA, timeout=60)
    assert run.returncode == 0, run.stderr
    for name, problems in json.loads(run.stdout).items():
        errors[name] += problems
    return errors


def test_traefik_middlewares_are_valid_by_traefiks_schema(traefik):
    assert traefik_middleware_errors(traefik["middlewares"]) == {"gateway-decision": [], "after-decision": []}


def test_traefik_check_is_strict(traefik):
    broken = copy.deepcopy(traefik["middlewares"])
    broken["gateway-decision"]["forwardAuth"]["authResponseHeader"] = ["X-User-Id"]
    broken["after-decision"]["headers"]["customRequestHeaders"] = "Authorization"
    errors = traefik_middleware_errors(broken)
    assert any("authResponseHeader:" in e for e in errors["gateway-decision"])
    assert any("customRequestHeaders" in e for e in errors["after-decision"])


def test_traefik_routers_and_services_use_documented_fields(traefik):
    assert set(traefik) == {"routers", "middlewares", "services"}
    for name, router in traefik["routers"].items():
        assert set(router) <= ROUTER_FIELDS, name
        assert router["service"] in traefik["services"], name
        assert all(m in traefik["middlewares"] for m in router.get("middlewares", [])), name
    for name, service in traefik["services"].items():
        (kind, body), = service.items()
        assert kind == "loadBalancer" and set(body) <= LOAD_BALANCER_FIELDS, name
        assert all(set(server) <= SERVER_FIELDS and server["url"].startswith("http://") for server in body["servers"])


def test_traefik_config_does_what_decision_mode_needs(traefik):
    auth = traefik["middlewares"]["gateway-decision"]["forwardAuth"]
    assert auth["address"] == "http://127.0.0.1:8080/auth/decide" and auth["trustForwardHeader"] is False
    assert auth["authResponseHeaders"] == IDENTITY
    regex = re.compile(auth["authResponseHeadersRegex"].replace("(?i)", ""), re.I)
    assert all(regex.match(h) for h in HOSTILE if h != "X-Forwarded-Prefix")  # Traefik replaces that one itself
    assert not any(regex.match(h) for h in HARMLESS + ["X-Forwarded-For", "X-Real-Ip"])  # Traefik sets those
    # after deciding: the token dropped, and the decision's X-Request-Id (copied by the regex above) too
    assert traefik["routers"]["app"]["middlewares"] == ["gateway-decision", "after-decision"]
    assert traefik["middlewares"]["after-decision"]["headers"]["customRequestHeaders"] == {
        "X-Request-Id": "", "Authorization": ""}
    # no router takes the decision path: Traefik's own 404
    assert all("!PathPrefix(`/auth/decide`)" in traefik["routers"][r]["rule"] for r in ("gateway-endpoints", "app"))


# -- HAProxy ----------------------------------------------------------------------------------------

def test_haproxy_config_does_what_decision_mode_needs():
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    lua = (DEPLOY / "gateway-auth.lua").read_text()
    rules = [line.strip() for line in cfg.splitlines() if line.strip().startswith("http-request")]
    assert rules[0] == "http-request return status 404 if { path_beg /auth/decide }"
    (strip,) = [r for r in rules if r.endswith("-m reg")]
    regex = re.compile(strip.split("'")[1])  # HAProxy matches its lower-cased names
    assert all(regex.match(h.lower()) for h in HOSTILE) and not any(regex.match(h.lower()) for h in HARMLESS)
    assert not any(regex.match(h.lower()) for h in ["Authorization", "Cookie", "Host"])  # the decision needs them
    decide = rules.index("http-request lua.gateway-decide if !gateway_endpoint")
    assert rules.index(strip) < decide < rules.index("http-request del-header Authorization if !gateway_endpoint")
    assert "lua-load /etc/haproxy/gateway-auth.lua" in cfg and "option forwardfor" in cfg
    assert 'local DECIDE = "http://127.0.0.1:8080/auth/decide"' in lua
    assert f"local IDENTITY = {{{', '.join(json.dumps(h) for h in IDENTITY)}}}" in lua


def test_haproxy_accepts_the_generated_config(tmp_path):
    """HAProxy's own check (``-c``: parsed, the Lua loaded and its action registered, nothing started)."""
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.fail("haproxy is not installed: run scripts/install-test-deps.sh")
    for name, text in render("haproxy", load_config(ROOT / "config" / "example.yaml"),
                             state_dir=str(tmp_path)).items():
        (tmp_path / name).write_text(text)
    run = subprocess.run([binary, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and "ALERT" not in run.stdout + run.stderr, run.stdout + run.stderr


# -- every front: generated, and what each removes ----------------------------------------------------

def test_the_shipped_configs_are_the_generators_output():
    """deploy/decision/ is `gateway decision-config FRONT --config config/example.yaml` with the default addresses:
    nothing there is listed by hand, so nothing can drift from the boundary rule."""
    config = load_config(ROOT / "config" / "example.yaml")
    for front in FRONTS:
        for name, text in render(front, config).items():
            assert (DEPLOY / name).read_text() == text, (
                f"deploy/decision/{name} differs from `gateway decision-config {front} --out deploy/decision`")


def test_the_registry_is_the_configs_list():
    assert sorted(FRONTS) == sorted(CONFIG_FRONTS)


def test_go_canonical_keys_are_gos():
    # net/textproto.CanonicalMIMEHeaderKey's outputs for these inputs (Go 1.21)
    cases = {"x-user-id": "X-User-Id", "x_user-id": "X_user-Id", "X-USER_ID": "X-User_id", "x_user_id": "X_user_id",
             "content-type": "Content-Type", "X-ProxyUser-Ip": "X-Proxyuser-Ip"}
    assert {k: go_canonical(k) for k in cases} == cases


def test_spellings():
    assert spellings("X-User-") == ["X-User-", "X-User_", "X-User.", "X_User-", "X_User_", "X_User.", "X.User-",
                                    "X.User_", "X.User."]
    assert spellings("Forwarded") == ["Forwarded"]


BOUNDARY = ClientBoundary.build(IDENTITY, ("X-User-", "X-Auth-"), ClientHeaders())
# front -> hostile names its config can NOT remove (the gateway refuses them instead)
CANNOT_REMOVE = {"nginx": {"X-User-Admin", "x-auth-user"}, "caddy": set(), "traefik": set(), "haproxy": set(),
                 "envoy": set()}


@pytest.mark.parametrize("front", sorted(CANNOT_REMOVE))
def test_what_each_front_removes(front):
    kind = FRONTS[front]
    assert all(BOUNDARY.covers(h) for h in HOSTILE) and not any(BOUNDARY.covers(h) for h in HARMLESS)
    assert {h for h in HOSTILE if not kind.removes(BOUNDARY, h)} == CANNOT_REMOVE[front]
    assert not any(kind.removes(BOUNDARY, h) and not BOUNDARY.covers(h) for h in HARMLESS)
