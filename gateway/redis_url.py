"""Redis URLs for the four deployments redis-py supports: one server, TLS, Sentinel, Cluster.

``redis://`` / ``rediss://`` / ``unix://`` are redis-py's own syntax. redis-py has
no URL for Sentinel or Cluster, so the gateway adds two, in the style most
clients use::

    redis+sentinel://[user:password@]host1:26379,host2:26379/<service>[/<db>][?options]
    redis+cluster://[user:password@]host1:6379,host2:6379[?options]

and their TLS forms ``rediss+sentinel://`` and ``rediss+cluster://``. Query
options are redis-py's connection options (``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_cert_reqs``, ``max_connections``...). For Sentinel,
``sentinel_username`` / ``sentinel_password`` authenticate to the sentinels
themselves when they differ from the data nodes' credentials.

This module only parses: errors never repeat the URL, which may hold a password.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote

__all__ = ["RedisTarget", "parse_redis_url"]

Kind = Literal["single", "sentinel", "cluster"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_DEFAULT_PORT = {"single": 6379, "sentinel": 26379, "cluster": 6379}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Redis URL. For ``single`` the original URL is kept and handed to redis-py as is."""

    kind: Kind
    tls: bool
    url: str = field(repr=False)
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def parse_redis_url(url: str) -> RedisTarget:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(f"not a Redis URL: use one of {', '.join(s + '://' for s in _SCHEMES)}")
    kind, tls = _SCHEMES[scheme.lower()]
    if kind == "single":
        if scheme.lower() != "unix" and not rest.split("/", 1)[0].rpartition("@")[2]:
            raise ValueError("the URL names no host")
        return RedisTarget(kind, tls, url)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hostlist = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(h, _DEFAULT_PORT[kind]) for h in hostlist.split(",") if h)
    if not hosts:
        raise ValueError("the URL names no host")
    segments = [s for s in path.split("/") if s]
    service, db = _service_and_db(kind, segments)
    return RedisTarget(
        kind, tls, url, hosts, service, db,
        unquote(username) or None, unquote(password) or None, tuple(parse_qsl(query)),
    )


def _host_port(item: str, default: int) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:26379
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError("a host in the URL is empty")
    if not port:
        return host, default
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a port in the URL is not a number between 1 and 65535")
    return host, int(port)


def _service_and_db(kind: Kind, segments: list[str]) -> tuple[str | None, int]:
    if kind == "cluster":
        if segments not in ([], ["0"]):
            raise ValueError("a Redis Cluster has only database 0 (write redis+cluster://host:port)")
        return None, 0
    if not segments or len(segments) > 2:
        raise ValueError("a Sentinel URL needs the service name: redis+sentinel://host:26379/<service>[/<db>]")
    if len(segments) == 2 and not segments[1].isdigit():
        raise ValueError("the database after the service name must be a number")
    return unquote(segments[0]), int(segments[1]) if len(segments) == 2 else 0
