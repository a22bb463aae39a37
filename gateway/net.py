"""Host names and addresses, normalised once: what a Host header, a route's host and a peer address mean.

Pure functions of strings, used by configuration, routing and the request
path alike, so a host or address is compared the same way everywhere.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

__all__ = ["DEFAULT_PORTS", "NO_PROXIES", "Host", "TrustedProxies", "ip_bucket", "is_loopback", "parse_address", "parse_host", "parse_network"]

DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


@dataclass(frozen=True, slots=True)
class Host:
    """A normalised host: lowercase name without a trailing dot (IPv6 in brackets), port unless default."""

    name: str
    port: int | None = None

    def __str__(self) -> str:
        return self.name if self.port is None else f"{self.name}:{self.port}"


@functools.lru_cache(maxsize=1024)  # per request (Host, X-Forwarded-Host): a few values each; a Host is immutable
def parse_host(value: str, scheme: str = "http") -> Host:
    """``value`` (a Host header, or X-Forwarded-Host) normalised; ValueError if it is not one host (never cached)."""
    text = value.strip().lower()
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unclosed IPv6 literal")
        name, rest = text[: end + 1], text[end + 1:]
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise ValueError("not an IPv6 address") from None
    else:
        name, sep, rest = text.partition(":")
        rest = sep + rest
        if name.endswith("."):
            name = name[:-1]
        if not _HOST_NAME.match(name) or len(name) > 253:
            raise ValueError("not a host name")
    if rest:
        digits = rest[1:]
        if not rest.startswith(":") or not digits.isdigit() or len(digits) > 5 or not 0 < int(digits) < 65536:
            raise ValueError("not a port")
        port = int(digits)
    if port == DEFAULT_PORTS.get(scheme):
        port = None
    return Host(name, port)


def is_loopback(name: str | None) -> bool:
    """Whether a host name or address (IPv6 with or without brackets) is this machine's loopback."""
    if not name:
        return False
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)  # once per client address, not per request; bounded against address floods
def ip_bucket(address: str) -> str:
    """IPv4 per address; IPv6 per /64, the block one subscriber usually gets."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "other"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: str) -> Network:
    """A CIDR block (``10.0.0.0/8``, ``2001:db8::/32``) or one address; ValueError for host bits set or garbage."""
    return ipaddress.ip_network(value.strip(), strict=True)


@functools.lru_cache(maxsize=4096)  # per hop text, not per request; bounded against floods of made-up hops
def parse_address(value: str) -> str | None:
    """One hop of X-Forwarded-For or a ``for=`` of Forwarded as a plain address; None when it is not one.

    Accepts ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1``, ``[2001:db8::1]:4711``, quoted;
    IPv4-mapped IPv6 becomes IPv4. ``unknown`` and obfuscated identifiers (``_hidden``) are None.
    """
    text = value.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """Which peers may report the client's address, scheme and host (``trusted_proxies``, ``trust_forwarded_headers``).

    ``every_peer``: any peer is believed for one hop (``trust_forwarded_headers: true`` without a list).
    ``networks``: the proxies' addresses; a peer inside them is believed, and so is every hop
    of its X-Forwarded-For that is inside them, walking left to the first one that is not.
    """

    every_peer: bool = False
    networks: tuple[Network, ...] = ()

    def is_proxy(self, address: str | None) -> bool:
        """Whether ``address`` (plain, as ``parse_address`` gives it) is one of ``networks``."""
        if not self.networks or not address:
            return False
        return _in_networks(address, self.networks)

    def trusts(self, peer: str | None) -> bool:
        """Whether the forwarding headers of this peer (the socket's remote address) are believed."""
        return self.every_peer or self.is_proxy(peer)


@functools.lru_cache(maxsize=4096)  # per peer address, not per request; bounded against address floods
def _in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    plain = parse_address(address)
    if plain is None:
        return False
    ip = ipaddress.ip_address(plain)
    return any(ip.version == net.version and ip in net for net in networks)


NO_PROXIES = TrustedProxies()
