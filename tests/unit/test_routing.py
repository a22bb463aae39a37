"""Route matching and the path normalisation that matching and forwarding share."""
from __future__ import annotations

import pytest

from gateway.config import Requirements, Route
from gateway.config.boundary import Paths
from gateway.errors import GatewayError
from gateway.net import Host, parse_host
from gateway.policy import check_requirements
from gateway.routing import Router, host_fallthrough, shadowed_routes
from gateway.target import parse_target


def route(prefix: str, name: str = "", **kw) -> Route:
    return Route(name=name or prefix, prefix=prefix, upstream="http://u", **kw)


def match(router: Router, target: str, method: str = "GET", host: str = "gw.example", client: str = "192.0.2.1") -> str | None:
    found = router.match(method, parse_host(host).name, parse_target(target), client)
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
        # what Tomcat, IIS, Express, double-decoding and Unicode-folding upstreams read differently
        "/api/admin;x/users",
        "/api/admin;/users",
        "/api/admin%3bx/users",
        # an encoded ? or # that a hop decoding once reads as the end of the path (/api/admin)
        "/api/admin%3F/users",
        "/api/admin%3f/users",
        "/api/admin%23/users",
        "/api/admin%23",
        "/api/x%3Fy",
        "/api%3f",
        "/api/admin./users",
        "/api/admin%20/users",
        "/api/admin%2e/users",
        "/api/%252e%252e/admin",
        "/api/admin%252fusers",
        "/api/x%255cadmin",
        "/api/%EF%BC%8E%EF%BC%8E/admin",  # fullwidth dots
        "/api/admin%EF%BC%8Fusers",  # fullwidth solidus
        "/api/admin%EF%BC%BCusers",  # fullwidth reverse solidus
        "/items/7?_method=DELETE",
        "/items/7?a=1&_METHOD=DELETE",
        "/items/7?%5Fmethod=DELETE",
    ],
)
def test_path_tricks_are_refused(target):
    with pytest.raises(GatewayError) as info:
        parse_target(target)
    assert info.value.status == 400 and info.value.code == "bad_request"


def test_prefixes_match_case_insensitively_and_forward_what_was_sent():
    router = Router([route("/api/admin", "admin"), route("/api", "api"), route("/", "catch-all")])
    for target in ("/api/ADMIN/users", "/API/Admin", "/api/%41dmin/x", "/api/\uff21\uff24\uff2d\uff29\uff2e"):
        assert match(router, target) == "admin", target
    assert parse_target("/api/ADMIN/users").forward_path() == "/api/ADMIN/users"
    strict = Router([route("/api/admin", "admin"), route("/", "catch-all")], case_sensitive=True)
    assert match(strict, "/api/ADMIN/users") == "catch-all"


def test_semicolon_parameters_can_be_stripped_instead():
    rules = Paths(semicolons="strip")
    path = parse_target("/api/admin;jsessionid=1/users;x", rules)
    assert path.segments == ("api", "admin", "users")
    assert path.forward_path() == "/api/admin/users"  # exactly what was matched
    for target in ("/api/;x/admin", "/api/admin%3bx"):
        with pytest.raises(GatewayError):
            parse_target(target, rules)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Admin.Example.COM", Host("admin.example.com")),
        ("admin.example.com.", Host("admin.example.com")),
        ("ADMIN.EXAMPLE.COM.:443", Host("admin.example.com", 443)),
        ("admin.example.com:80", Host("admin.example.com")),
        ("[::1]:8080", Host("[::1]", 8080)),
        ("127.0.0.1", Host("127.0.0.1")),
        ("svc_name:9000", Host("svc_name", 9000)),
    ],
)
def test_hosts_are_normalised(value, expected):
    assert parse_host(value) == expected


@pytest.mark.parametrize(
    "value",
    ["admin.example.com/x", "admin.example.com, evil", "a b", "admin.example.com..", "", ":80", "x:0", "x:99999",
     "x:8o", "[::1", "[zz]", "admin.example.com:443:1", "-x.example", "x" * 254, "exa\u0301mple.com"],
)
def test_invalid_hosts_are_refused(value):
    with pytest.raises(ValueError):
        parse_host(value)


def test_host_routes_see_the_normalised_host():
    router = Router([route("/", "admin", host="admin.example.com"), route("/", "public")])
    for host in ("admin.example.com", "ADMIN.example.com.", "admin.example.com.:443", "Admin.Example.Com:8080"):
        assert match(router, "/x", host=host) == "admin", host
    assert match(router, "/x", host="other.example") == "public"


def test_check_warns_when_a_host_route_falls_through_to_a_hostless_one():
    routes = (route("/api", "api"), route("/", "admin", host="admin.example.com"), route("/", "public"))
    warnings = host_fallthrough(routes)
    assert len(warnings) == 1 and "admin" in warnings[0] and "public" in warnings[0]
    assert shadowed_routes(routes) == []


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
        check_requirements(route_, claims, {})
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


# -- what the mutation run (docs/mutation.md) found untested

def test_wildcard_hosts_match_subdomains_only():
    router = Router([route("/", "wild", host="*.example.com"), route("/", "rest")])
    for host in ("a.example.com", "a.b.example.com", "A.EXAMPLE.COM:8443"):
        assert match(router, "/x", host=host) == "wild", host
    for host in ("evilexample.com", "example.com", "example.com.evil", "aexample.com", "example.co"):
        assert match(router, "/x", host=host) == "rest", host


def test_a_later_route_can_win_where_an_earlier_one_does_not_fit():
    router = Router([route("/api", "posts", methods=("POST",)), route("/api", "host", host="h.example"),
                     route("/api/x", "deep"), route("/api", "any")])
    assert match(router, "/api/x/y", "POST") == "posts"
    assert match(router, "/api/x/y", "GET", "h.example") == "host"
    assert match(router, "/api/x/y", "GET") == "deep"
    assert match(router, "/api/y", "GET") == "any"
    assert match(router, "/api", "GET") == "any"
    assert match(router, "/", "GET") is None


def test_earliest_route_wins_across_depths():
    router = Router([route("/a/b/c", "deepest"), route("/a", "shallow", methods=("GET",)), route("/a/b", "middle")])
    assert match(router, "/a/b/c/d", "GET") == "deepest"
    assert match(router, "/a/b/x", "GET") == "shallow"
    assert match(router, "/a/b/x", "POST") == "middle"
    assert match(router, "/a/x", "POST") is None


def test_case_sensitive_routers_match_exactly():
    router = Router([route("/API/Admin", "admin")], case_sensitive=True)
    assert match(router, "/API/Admin/x") == "admin"
    assert match(router, "/api/admin/x") is None
    folded = Router([route("/API/Admin", "admin")])
    assert match(folded, "/api/ADMIN/x") == "admin"


def test_shadowed_routes_name_the_route_and_its_shadow():
    routes = (route("/api", "api"), route("/api/admin", "admin"), route("/other", "other"))
    assert shadowed_routes(routes) == ["routes[1] (admin): shadowed by earlier route api (/api)"]
    by_method = (route("/api", "reads", methods=("GET", "HEAD")), route("/api", "get", methods=("GET",)),
                 route("/api", "post", methods=("POST",)), route("/api", "all"))
    assert shadowed_routes(by_method) == ["routes[1] (get): shadowed by earlier route reads (/api)"]
    same_methods = (route("/api", "first", methods=("GET",)), route("/api/x", "second", methods=("GET",)))
    assert shadowed_routes(same_methods) == ["routes[1] (second): shadowed by earlier route first (/api)"]
    by_host = (route("/api", "h", host="a.example"), route("/api", "same", host="a.example"),
               route("/api", "other", host="b.example"), route("/api", "none"))
    assert shadowed_routes(by_host) == ["routes[1] (same): shadowed by earlier route h (/api)"]
    hostless_first = (route("/", "root"), route("/api", "h", host="a.example"), route("/x", "x", methods=("GET",)))
    assert shadowed_routes(hostless_first) == ["routes[1] (h): shadowed by earlier route root (/)",
                                               "routes[2] (x): shadowed by earlier route root (/)"]
    assert shadowed_routes((route("/api/admin", "admin"), route("/api", "api"))) == []


def test_host_fallthrough_names_both_routes():
    routes = (route("/api", "admin", host="admin.example.com"), route("/", "public"))
    assert host_fallthrough(routes) == [
        "routes[1] (public): serves /api for every host but admin.example.com, with other rules than routes[0] (admin); "
        "make sure its upstream cannot serve admin.example.com (nginx: a default_server that refuses unknown names)"
    ]
    assert host_fallthrough((route("/api", "admin", host="a.example"), route("/api/x", "deeper"))) == []
    assert host_fallthrough((route("/api", "admin", host="a.example"), route("/api", "other", host="b.example"))) == []
    disjoint = (route("/api", "admin", host="a.example", methods=("POST",)), route("/", "reads", methods=("GET",)))
    assert host_fallthrough(disjoint) == []
    overlapping = (route("/api", "admin", host="a.example", methods=("POST", "GET")), route("/", "reads", methods=("GET",)))
    assert len(host_fallthrough(overlapping)) == 1
    either_any = (route("/api", "admin", host="a.example"), route("/", "reads", methods=("GET",)))
    assert len(host_fallthrough(either_any)) == 1
    any_later = (route("/api", "admin", host="a.example", methods=("GET",)), route("/", "all"))
    assert len(host_fallthrough(any_later)) == 1
    twice = (route("/api", "admin", host="a.example"), route("/", "first"), route("/api", "second"))
    assert [w.split(" ")[0] for w in host_fallthrough(twice)] == ["routes[1]"]
    two_hosts = (route("/a", "ha", host="a.example"), route("/b", "hb", host="b.example"), route("/", "all"))
    assert [w.split(" ")[0] for w in host_fallthrough(two_hosts)] == ["routes[2]", "routes[2]"]
