"""``networks`` and ``routes[].networks``: client networks, named once and used by routes.

A definition (one entry of the top-level ``networks:`` map, or one route's
``networks`` list) is checked where it is written: every CIDR block without
host bits, no entry inside another of the same definition (a typo more often
than an intent), names that exist (with the closest defined one suggested).
Routes resolve their list into ``ipaddress`` networks once, at load
(``resolve``), IPv4-mapped IPv6 blocks (``::ffff:10.0.0.0/104``) as the IPv4
blocks they are, since the gateway compares a mapped client address as IPv4.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Annotated, Any, Iterable, Mapping

from pydantic import AfterValidator, ValidationInfo

from gateway.net import Network

__all__ = ["CONTEXT", "NetworkList", "NetworkName", "NetworkRef", "check_route_networks", "resolve", "unknown_names"]

CONTEXT = "networks"  # the validation context's key (loading.parse_config): the names the file defines
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_EXPECTED = "a CIDR block without host bits (10.0.0.0/8, 2001:db8::/32), or one address"


def _is_cidr_like(text: str) -> bool:
    """Written as an address or block (digits and dots, or a colon, or a slash), not as a name."""
    return "/" in text or ":" in text or bool(re.fullmatch(r"[0-9.]+", text))


def _network(text: str) -> Network:
    """A CIDR block as the gateway compares it: an IPv4-mapped IPv6 block becomes its IPv4 block."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"not {_EXPECTED} ({exc})") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def _cidr(value: str) -> str:
    _network(value)
    return value


def _ref(value: str) -> str:
    """A route's entry: a CIDR block, or the name of a defined network."""
    if _is_cidr_like(value):
        return _cidr(value)
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is neither {_EXPECTED} nor a network name (letters, digits, _ and -)")
    return value


def _overlaps(entries: Iterable[str]) -> list[str]:
    """Each entry (a CIDR block) that lies inside, or equals, an earlier or later one of the same definition."""
    seen: list[tuple[str, Network]] = []
    problems = []
    for text in entries:
        network = _network(text)
        for earlier_text, earlier in seen:
            if network.version == earlier.version and (network.subnet_of(earlier) or earlier.subnet_of(network)):  # type: ignore[arg-type]
                problems.append(f"{text!r} overlaps {earlier_text!r}")
                break
        seen.append((text, network))
    return problems


def _definition(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("list at least one CIDR block")
    problems = _overlaps(value)
    if problems:
        raise ValueError("entries of one network overlap: " + "; ".join(problems) + " (list each block once)")
    return value


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a network name (a letter, then letters, digits, _ and -; at most 64)")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
NetworkName = Annotated[str, AfterValidator(_name)]
NetworkRef = Annotated[str, AfterValidator(_ref)]
NetworkList = Annotated[tuple[Cidr, ...], AfterValidator(_definition)]


def check_route_networks(value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
    """A route's list: not empty, its blocks not overlapping, each name defined (when the file's names are known)."""
    if value is None:
        return None
    if not value:
        raise ValueError("list at least one network or CIDR block (or leave networks out: every client)")
    duplicates = sorted({v for v in value if value.count(v) > 1})
    if duplicates:
        raise ValueError(f"listed twice: {', '.join(map(repr, duplicates))}")
    problems = _overlaps([v for v in value if _is_cidr_like(v)])
    if problems:
        raise ValueError("entries overlap: " + "; ".join(problems) + " (list each block once)")
    context = info.context if isinstance(info.context, dict) else None
    if context is not None and isinstance(context.get(CONTEXT), Mapping):
        unknown = unknown_names(value, context[CONTEXT])
        if unknown:
            raise ValueError(unknown[0])
    return value


def unknown_names(refs: Iterable[str], defined: Mapping[str, Any]) -> list[str]:
    """A problem for each name in ``refs`` that ``defined`` (the top-level ``networks`` map) lacks."""
    problems = []
    for ref in refs:
        if _is_cidr_like(ref) or ref in defined:
            continue
        close = difflib.get_close_matches(ref, [str(n) for n in defined], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(map(str, defined))) or "none"
        problems.append(f"unknown network {ref!r}{hint} (expected a CIDR block or a name defined in networks: {known})")
    return problems


def resolve(refs: Iterable[str], defined: Mapping[str, tuple[str, ...]]) -> tuple[Network, ...]:
    """A route's networks as ``ipaddress`` blocks: its CIDR blocks, and those of the networks it names."""
    blocks: list[Network] = []
    for ref in refs:
        for text in defined[ref] if ref in defined and not _is_cidr_like(ref) else (ref,):
            network = _network(text)
            if network not in blocks:
                blocks.append(network)
    return tuple(blocks)
