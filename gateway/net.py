"""Host names and addresses, normalised once: what a Host header, a route's host and a peer address mean.

Pure functions of strings, used by configuration, routing and the request
path alike, so a host or address is compared the same way everywhere.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

__all__ = ["DEFAULT_PORTS", "Host", "ip_bucket", "is_loopback", "parse_host"]

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


def parse_host(value: str, scheme: str = "http") -> Host:
    """``value`` (a Host header, or X-Forwarded-Host) normalised; ValueError if it is not one host."""
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
