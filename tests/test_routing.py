"""Route matching and the path normalisation that matching and forwarding share."""
from __future__ import annotations

import pytest

from gateway.config import Requirements, Route
from gateway.errors import GatewayError
from gateway.routing import Router, check_requirements, parse_target


def route(prefix: str, name: str = "", **kw) -> Route:
    return Route(name=name or prefix, prefix=prefix, upstream="http://u", **kw)


def match(router: Router, target: str, method: str = "GET", host: str = "gw.example") -> str | None:
    found = router.match(method, host, parse_target(target))
    return found.name if found else None


def test_prefix_matches_at_segment_boundary():
    router = Router([route("/api")])
    assert match(router, "/api") == "/api"
    assert match(router, "/api/") == "/api"
    assert match(router, "/api/x/y?q=1") == "/api"
    assert match(router, "/apix") is None
    assert match(router, "/") is None


def test_first_match_wins_not_longest():
    router = Router([route("/api", "broad"), route("/api/admin", "narrow")])
    assert match(router, "/api/admin/x") == "broad"
    router = Router([route("/api/admin", "narrow"), route("/api", "broad")])
    assert match(router, "/api/admin/x") == "narrow" and match(router, "/api/other") == "broad"


def test_root_route_catches_everything_after_earlier_routes():
    router = Router([route("/api", "api"), route("/", "root")])
    assert match(router, "/anything") == "root" and match(router, "/api/x") == "api"


def test_methods_and_hosts():
    router = Router([
        route("/api", "reads", methods=("GET", "HEAD")),
        route("/api", "tenant", host="*.tenant.example"),
        route("/api", "exact-host", host="api.example"),
    ])
    assert match(router, "/api/x", "GET") == "reads"
    assert match(router, "/api/x", "POST", "a.tenant.example:8443") == "tenant"
    assert match(router, "/api/x", "POST", "API.example") == "exact-host"
    assert match(router, "/api/x", "POST", "other.example") is None


def test_matching_uses_decoded_segments_and_forwarding_the_raw_ones():
    path = parse_target("/%61pi/caf%C3%A9/x%20y/?a=%2F")
    assert path.segments == ("api", "café", "x y") and path.query == "a=%2F"
    assert path.forward_path() == "/%61pi/caf%C3%A9/x%20y/"
    assert path.forward_path(strip=1) == "/caf%C3%A9/x%20y/"
    assert match(Router([route("/api")]), "/%61pi/x") == "/api"


@pytest.mark.parametrize(
    "target",
    [
        "/public/../admin",
        "/public/./admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2e/admin",
        "/public/.%2e/admin",
        "//admin",
        "/public//admin",
        "/admin%2f..",
        "/admin%2F",
        "/public%5c..%5cadmin",
        "/public\\..\\admin",
        "/public/..;/admin",
        "/a%00b",
        "/a%0d%0aSet-Cookie:x",
        "/bad%zz",
        "/bad%",
        "/%ff%fe",
        "http://evil.example/admin",
        "*",
    ],
)
def test_path_tricks_are_refused(target):
    with pytest.raises(GatewayError) as info:
        parse_target(target)
    assert info.value.status == 400 and info.value.code == "bad_request"


def test_match_cost_does_not_depend_on_route_count():
    """10,000 routes: the trie visits one node per path segment, whatever the route count."""
    routes = [route(f"/svc{i}/api", f"r{i}") for i in range(10_000)]
    router = Router(routes)
    assert match(router, "/svc9999/api/x") == "r9999"
    assert match(router, "/svc10000/api") is None


def claims_route(**req) -> Route:
    return route("/x", require=Requirements(**req))


def denied(route_: Route, claims: dict) -> bool:
    try:
        check_requirements(route_, claims)
    except GatewayError as exc:
        assert exc.status == 403 and exc.code == "permission_denied"
        return True
    return False


def test_roles_any():
    r = claims_route(roles_any=("admin", "ops"))
    assert not denied(r, {"roles": ["user", "ops"]})
    assert not denied(r, {"roles": "admin"})
    assert denied(r, {"roles": ["user"]}) and denied(r, {})


def test_scopes_all():
    r = claims_route(scopes_all=("read", "write"))
    assert not denied(r, {"scope": "read write admin"})
    assert not denied(r, {"scopes": ["read", "write"]})
    assert denied(r, {"scope": "read"})


def test_claim_equality_is_strict():
    r = claims_route(claims={"tenant": "acme", "verified": True})
    assert not denied(r, {"tenant": "acme", "verified": True})
    assert denied(r, {"tenant": "acme", "verified": 1})
    assert denied(r, {"tenant": "other", "verified": True})
    assert denied(r, {"verified": True})
