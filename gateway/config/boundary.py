"""Settings of the upstream trust boundary: which client headers cross it, how paths are read.

Defaults are the strict reading; every relaxation is a named setting. The
behaviour itself lives where it is applied: paths in ``target``, headers in
``rewrite``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["AUTHORITATIVE_HEADERS", "EXAMPLE_SECRETS", "FORWARDING_HEADERS", "ClientBoundary", "ClientHeaders", "Paths",
           "fold_header", "odd_separator"]

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# Headers that upstream frameworks read as the client's address, the URL, the method or
# the user, set by whatever proxy is in front of them. A client must never choose them.
AUTHORITATIVE_HEADERS = (
    "Forwarded", "X-Forwarded", "X-Real-IP", "True-Client-IP", "X-Client-IP", "X-Cluster-Client-IP", "Client-IP",
    "CF-Connecting-IP", "Fastly-Client-IP", "X-ProxyUser-Ip", "X-Original-URL", "X-Original-URI", "X-Rewrite-URL",
    "X-Original-Host", "X-Host", "X-Original-Method", "X-HTTP-Method-Override", "X-HTTP-Method",
    "X-Method-Override", "Remote-User", "X-Remote-User", "Remote-Addr",
    # identities set by auth proxies (oauth2-proxy, Grafana's auth proxy): dropped even from trusted proxies,
    # since trust_forwarded_headers lets the other X-Forwarded-* through
    "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups",
    "X-Forwarded-Access-Token", "X-WEBAUTH-USER",
)

# Written by whatever proxies to the upstream (the gateway in proxy mode, the front proxy in decision mode), never
# copied from the client as sent (proxy mode's X-Request-Id is the request's id, which reuses a well-formed one of
# the client's; a front sets its own).
FORWARDING_HEADERS = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id")

# Secrets that appear in this project's docs and example files: anyone can mint tokens with them.
EXAMPLE_SECRETS = frozenset({
    "dev-only-secret-change-me-0123456789abcdef",
    "CHANGE-ME-placeholder-secret-at-least-32-bytes-long",
})


def fold_header(name: str) -> str:
    """A header name as CGI-style servers see it: case does not matter, and ``_`` and ``.`` are ``-``
    (gunicorn < 22, PHP-FPM, Puma and Rack all make HTTP_X_USER_ID of X-User-Id, X_User_Id and X.User.Id)."""
    return name.lower().replace("_", "-").replace(".", "-")


def odd_separator(name: str) -> bool:
    """Whether a header name separates words with something CGI-style servers fold into ``-`` (``_`` or ``.``)."""
    return "_" in name or "." in name


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClientHeaders(_Model):
    """Which of the client's headers reach the upstream (``client_headers``)."""

    allow_underscores: bool = False
    """Keep header names with `_` or `.`; false drops them like nginx, since CGI-style servers (gunicorn < 22, PHP-FPM, Puma) read X_User_Id and X.User.Id as X-User-Id."""
    strip: tuple[str, ...] = ()
    """Dropped too, besides the built-in list of authoritative headers (Forwarded, X-Forwarded-*, X-Real-IP, ...)."""
    keep: tuple[str, ...] = ()
    """Names of the built-in list to let through after all, e.g. `[X-Real-IP]`."""

    @field_validator("strip", "keep")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a header name")
        return value

    @field_validator("keep")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {fold_header(h) for h in AUTHORITATIVE_HEADERS}
        unknown = [name for name in value if fold_header(name) not in known]
        if unknown:
            raise ValueError(f"{unknown} are not stripped by default, so there is nothing to keep")
        if "forwarded" in {fold_header(n) for n in value}:
            raise ValueError("Forwarded is always set by the gateway itself")
        return value

    def stripped(self) -> frozenset[str]:
        """Folded names dropped from every client request."""
        keep = {fold_header(n) for n in self.keep}
        return frozenset(fold_header(n) for n in (*AUTHORITATIVE_HEADERS, *self.strip) if fold_header(n) not in keep)


class Paths(_Model):
    """How request paths are read before routing (``paths``)."""

    semicolons: Literal["reject", "strip"] = "reject"
    """`reject`: a `;` in a segment is a 400; `strip`: `;params` are removed, then the path is matched and forwarded."""
    case_sensitive: bool = False
    """False: prefixes match ignoring case (/API/Admin takes the /api/admin route)."""


@dataclass(frozen=True, slots=True)
class ClientBoundary:
    """Which client headers never reach an upstream: the one rule of proxy mode's header rewrite and of every
    front proxy's generated config in decision mode (``gateway decision-config``).

    A name is covered when it contains ``_`` or ``.`` (unless ``client_headers.allow_underscores``), when its folded
    form is one of ``names``, or when it starts with one of ``prefixes``; and every ``X-Forwarded-*`` of the
    client is, unless the gateway trusts the peer's forwarding headers (``covers(name, trust_forwarded=True)``;
    the gateway then extends the trusted ``X-Forwarded-For`` chain itself).
    """

    names: tuple[str, ...]  # as spelled in the configuration and the built-in lists, for the front configs
    prefixes: tuple[str, ...]  # identity header families (identity_header_prefixes), as spelled
    identity: tuple[str, ...]  # the headers the gateway itself injects: routes[].headers and signed identity headers
    underscores: bool  # every name with "_" or "." is covered
    folded: frozenset[str]  # names, folded (fold_header)
    folded_prefixes: tuple[str, ...]
    credentials: tuple[str, ...] = ()  # credential headers (service_keys.header): sent to the check, never to the app

    @classmethod
    def build(cls, identity: Iterable[str], prefixes: Iterable[str], settings: ClientHeaders,
              credentials: Iterable[str] = ()) -> ClientBoundary:
        own = tuple(dict.fromkeys(identity))
        keep = {fold_header(n) for n in settings.keep}
        listed = [n for n in (*AUTHORITATIVE_HEADERS, *settings.strip) if fold_header(n) not in keep]
        secret = tuple(dict.fromkeys(credentials))
        names = tuple({fold_header(n): n for n in (*own, *listed, *FORWARDING_HEADERS, *secret)}.values())
        families = tuple(dict.fromkeys(prefixes))
        return cls(names, families, own, not settings.allow_underscores, frozenset(fold_header(n) for n in names),
                   tuple(fold_header(p) for p in families), secret)

    def covers(self, name: str, *, trust_forwarded: bool = False) -> bool:
        """Whether a client header of this name is removed before the upstream (compared as CGI-style servers do)."""
        if self.underscores and odd_separator(name):
            return True
        folded = fold_header(name)
        if folded in self.folded or folded.startswith(self.folded_prefixes):
            return True
        return folded.startswith("x-forwarded-") and not trust_forwarded
