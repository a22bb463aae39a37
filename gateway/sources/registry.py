"""The source kinds, and the chain built from the configuration.

A source is one module and one line in ``KINDS``: ``file`` (the users file),
``sql`` (a legacy application's table), ``ldap`` (a directory), ``http`` (a
legacy login endpoint). ``build_chain`` turns the configuration's ``users:``
list (or ``users_file:``) into the ``UserChain`` that logins and refreshes ask.
"""
from __future__ import annotations

from typing import Callable

from gateway.config import GatewayConfig  # safe here: registry is imported after config
from gateway.config.sources import SourceSpec
from gateway.sources.base import SourceUnavailable, UserSource
from gateway.sources.chain import NOT_REREAD, SourceEvents, UserChain
from gateway.sources.file import FileSource
from gateway.sources.users import UserDirectory

__all__ = ["KINDS", "NOT_REREAD", "SourceEvents", "SourceUnavailable", "UserChain", "build_chain", "source_specs"]


def _sql(spec: SourceSpec, name: str) -> UserSource:
    from gateway.sources.sql import SqlSource

    assert spec.sql is not None
    return SqlSource(spec.sql, name)


def _ldap(spec: SourceSpec, name: str) -> UserSource:
    from gateway.sources.ldap import LdapSource

    assert spec.ldap is not None
    return LdapSource(spec.ldap, name)


def _http(spec: SourceSpec, name: str) -> UserSource:
    from gateway.sources.http import HttpSource

    assert spec.http is not None
    return HttpSource(spec.http, name)


def _file(spec: SourceSpec, name: str) -> UserSource:
    assert spec.file is not None
    return FileSource.from_path(spec.file, name)


# kind -> factory; a new source is a module plus one line here (and its settings model).
KINDS: dict[str, Callable[[SourceSpec, str], UserSource]] = {"file": _file, "sql": _sql, "ldap": _ldap, "http": _http}


def source_specs(config: GatewayConfig) -> list[SourceSpec]:
    if config.users is not None:
        return list(config.users)
    assert config.users_file is not None
    return [SourceSpec(file=config.users_file)]


def _name(spec: SourceSpec, index: int, total: int) -> str:
    return spec.kind if total == 1 else f"{spec.kind}[{index}]"


def build_chain(
    config: GatewayConfig,
    events: SourceEvents | None = None,
    previous: UserChain | None = None,
    directory: UserDirectory | None = None,
) -> UserChain:
    """The chain for ``config``. Network sources whose settings did not change are taken over from
    ``previous`` (a reload keeps their pools); file sources are always read anew. ``directory``
    replaces a lone users file (tests inject one)."""
    specs = source_specs(config)
    kept = [(s.name, getattr(s, "settings", None), s) for s in previous.sources] if previous else []
    sources: list[UserSource] = []
    for i, spec in enumerate(specs):
        name = _name(spec, i, len(specs))
        settings = getattr(spec, spec.kind)
        if spec.kind == "file" and directory is not None and len(specs) == 1:
            sources.append(FileSource(directory, name))
        elif spec.kind != "file" and (same := [s for n, st, s in kept if n == name and st == settings]):
            sources.append(same[0])
        else:
            sources.append(KINDS[spec.kind](spec, name))
    return UserChain(sources, events, previous)


def retired_sources(previous: UserChain, current: UserChain) -> list[UserSource]:
    """Sources of ``previous`` that ``current`` no longer uses (to close after a reload)."""
    return [s for s in previous.sources if all(s is not c for c in current.sources)]
