"""Routes by client network: blocks and names resolved at load, IPv4, IPv6 and IPv4-mapped clients, load errors."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import ConfigError, Route, load_config
from gateway.config.networks import resolve
from gateway.net import parse_network
from gateway.routing import Router, client_in, shadowed_routes
from gateway.target import parse_target

OFFICE = {"office": ("192.0.2.0/24", "2001:db8:1::/48"), "vpn": ("10.8.0.0/16",)}


def route(name: str, networks: tuple[str, ...] | None = None, prefix: str = "/") -> Route:
    return Route(name=name, prefix=prefix, upstream="http://u", networks=networks)


def taken_by(router: Router, client: str, target: str = "/x") -> str | None:
    found = router.match("GET", "gw.example", parse_target(target), client)
    return found.name if found else None


@pytest.mark.parametrize(("client", "expected"), [
    ("192.0.2.1", "office"),
    ("192.0.2.255", "office"),
    ("192.0.3.1", "everyone"),
    ("10.8.200.7", "office"),  # vpn, by name
    ("10.9.0.1", "everyone"),
    ("2001:db8:1::1", "office"),
    ("2001:db8:1:ffff::1", "office"),
    ("2001:db8:2::1", "everyone"),
    ("::ffff:192.0.2.9", "office"),  # an IPv4-mapped peer (dual-stack listener) is its IPv4 address
    ("::ffff:198.51.100.100", "everyone"),
    ("::ffff:198.51.100.1", "lab"),
    ("198.51.100.7", "lab"),  # an inline block
    ("unknown", "everyone"),  # a peer that is no address (a Unix socket) is in no network
    ("", "everyone"),
    ("192.0.2.1.evil", "everyone"),
])
def test_a_route_with_networks_takes_only_their_clients(client, expected):
    router = Router([route("office", ("office", "vpn")), route("lab", ("198.51.100.0/28",)), route("everyone")],
                    networks=OFFICE)
    assert taken_by(router, client) == expected


def test_without_a_later_route_other_clients_get_nothing():
    router = Router([route("office", ("office",))], networks=OFFICE)
    assert taken_by(router, "192.0.2.1") == "office"
    assert taken_by(router, "203.0.113.1") is None  # default deny: 404


def test_prefix_and_networks_both_decide():
    router = Router([route("office-admin", ("office",), "/admin"), route("admin", None, "/admin"), route("root")],
                    networks=OFFICE)
    assert taken_by(router, "192.0.2.1", "/admin/x") == "office-admin"
    assert taken_by(router, "203.0.113.1", "/admin/x") == "admin"
    assert taken_by(router, "192.0.2.1", "/other") == "root"


def test_mapped_blocks_are_resolved_as_ipv4():
    assert resolve(["::ffff:10.0.0.0/104"], {}) == (parse_network("10.0.0.0/8"),)
    assert client_in("10.1.2.3", resolve(["::ffff:10.0.0.0/104"], {}))
    assert not client_in("10.1.2.3", resolve(["::/0"], {}))  # an IPv4 client is never in an IPv6 block
    assert not client_in("2001:db8::1", resolve(["0.0.0.0/0"], {}))
    assert resolve(["office", "192.0.2.0/24"], OFFICE) == (parse_network("192.0.2.0/24"), parse_network("2001:db8:1::/48"))


def test_answers_that_depend_on_the_client_address_are_known():
    office, later, unrelated = route("office", ("office",)), route("later"), route("first")
    router = Router([unrelated, office, later], networks=OFFICE)
    assert not router.network_dependent(unrelated)
    assert router.network_dependent(office)
    assert router.network_dependent(later)  # an office client would have taken "office"


def test_a_route_with_networks_shadows_nobody():
    assert shadowed_routes((route("office", ("10.0.0.0/8",)), route("everyone"))) == []
    assert shadowed_routes((route("everyone"), route("office", ("10.0.0.0/8",)))) != []


def write(tmp_path: Path, body: str) -> Path:
    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent("""\
        tokens: {secret: "0123456789abcdef0123456789abcdef0123"}
        users_file: users.yaml
    """) + textwrap.dedent(body))
    return path


def problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, body))
    return info.value.problems


def test_load_resolves_names(tmp_path):
    config = load_config(write(tmp_path, """\
        networks:
          office: [192.0.2.0/24]
        routes:
          - {prefix: /, upstream: "http://u", auth: none, networks: [office, "2001:db8::/32"]}
    """))
    assert config.networks == {"office": ("192.0.2.0/24",)}
    assert config.routes[0].networks == ("office", "2001:db8::/32")


def test_host_bits_are_refused_with_line_and_value(tmp_path):
    found = problems(tmp_path, """\
        networks:
          office:
            - 192.0.2.0/24
            - 198.51.100.1/24
        routes: []
    """)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'gateway.yaml'}:6: networks.office[1]: ")
    assert "not a CIDR block without host bits" in found[0]
    assert found[0].endswith("(198.51.100.1/24 has host bits set) (got '198.51.100.1/24')")


def test_unknown_names_suggest_the_closest(tmp_path):
    found = problems(tmp_path, """\
        networks:
          office: [192.0.2.0/24]
        routes:
          - {prefix: /a, upstream: "http://u"}
          - prefix: /
            upstream: "http://u"
            networks: [ofice]
    """)
    assert found == [f"{tmp_path / 'gateway.yaml'}:9: routes[1].networks: unknown network 'ofice'; did you mean 'office'? "
                     "(expected a CIDR block or a name defined in networks: office)"]


def test_overlaps_inside_one_definition_are_reported(tmp_path):
    found = problems(tmp_path, """\
        networks:
          office: [10.0.0.0/8, 10.1.0.0/16]
          vpn: [10.1.0.0/16]
        routes:
          - {prefix: /, upstream: "http://u", networks: ["2001:db8::/32", "2001:db8:5::/48"]}
    """)
    assert len(found) == 2, found
    assert ":4: networks.office: entries of one network overlap: '10.1.0.0/16' overlaps '10.0.0.0/8'" in found[0]
    assert ":7: routes[0].networks: entries overlap: '2001:db8:5::/48' overlaps '2001:db8::/32'" in found[1]


@pytest.mark.parametrize(("networks", "message"), [
    ("[]", "list at least one network or CIDR block"),
    ("[office, office]", "listed twice: 'office'"),
    ('["bad name!"]', "is neither a CIDR block"),
    ("[300.1.1.0/24]", "routes[0].networks[0]: not a CIDR block without host bits (10.0.0.0/8, 2001:db8::/32), or one address"),
    ("[gateway]", "unknown network 'gateway'"),
])
def test_route_entries_are_checked(tmp_path, networks, message):
    found = problems(tmp_path, f"""\
        networks:
          office: [192.0.2.0/24]
        routes:
          - {{prefix: /, upstream: "http://u", networks: {networks}}}
    """)
    assert len(found) == 1 and message in found[0], found


def test_names_are_checked_without_the_loaders_context():
    from gateway.config import GatewayConfig
    with pytest.raises(ValueError, match="routes\\[0\\].networks: unknown network 'lab'"):
        GatewayConfig.model_validate({"tokens": {"secret": "0123456789abcdef0123456789abcdef0123"}, "users_file": "u",
                                      "routes": [{"prefix": "/", "upstream": "http://u", "networks": ["lab"]}]})
