"""What every front proxy of decision mode declares: where it describes the original request, what its generated
config removes before the app, and the config itself.

The removal rule and the rendered config come from one ``ClientBoundary`` (proxy mode's header rule), so
what a front strips is never a hand-kept list: ``removes`` says, name by name, what the config ``render``
writes will take out of the request before the app gets it; the gateway refuses a decision whose original
request carries anything the boundary covers and ``removes`` does not (``front.Front.unstripped``).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Callable

from gateway.config.boundary import ClientBoundary, fold_header, odd_separator

__all__ = ["ODD", "SEPARATOR", "Deployment", "FrontKind", "go_canonical", "regex_alternatives", "spellings"]

SEPARATOR = "[-_.]"  # a word separator of a header name, as a regex: CGI-style servers read all three as "-"
ODD = ".*[_.].*"  # a name with a separator other than "-"


@dataclass(frozen=True, slots=True)
class Deployment:
    """What a generated front config needs to know: the boundary, and where things listen."""

    boundary: ClientBoundary
    decide_path: str = "/auth/decide"
    listen: str = "127.0.0.1:80"  # where the front proxy listens
    gateway: str = "127.0.0.1:8080"  # host:port of the gateway (its own endpoints and decisions)
    app: str = "127.0.0.1:8000"  # host:port of the app
    forward_authorization: bool = False  # some route forwards the client's Authorization: the front keeps it
    state_dir: str = ""  # where a front keeps files it needs (nginx: the decision cache; haproxy: its Lua script)
    front_cache: bool = False  # nginx: cache decisions in nginx too (see fronts/nginx.py for what that gives up)


@dataclass(frozen=True, slots=True)
class FrontKind:
    """One front proxy: its request description, its removal rule and its config generator."""

    name: str
    method_header: str | None  # None: the decision request's own method
    target_header: str | None  # None: what follows ``decision.path`` in the decision request's path
    host_header: str
    removes: Callable[[ClientBoundary, str], bool]
    render: Callable[[Deployment], dict[str, str]]  # file name -> text
    forwards_upgrade: bool = False  # the decision request still says Upgrade: websocket


def spellings(name: str) -> list[str]:
    """Every ``-``/``_``/``.`` spelling of a header name (or prefix), the given one first: CGI-style servers read
    X_User-Id, X-User_Id, X.User.Id and X_User_Id all as X-User-Id."""
    parts = re.split(r"[-_.]", name)
    seps = itertools.product("-_.", repeat=len(parts) - 1)
    out = ["".join(p + s for p, s in zip(parts, (*sep, ""), strict=True)) for sep in seps]
    return list(dict.fromkeys([name, *out]))


def go_canonical(name: str) -> str:
    """The key Go's net/http gives a header (textproto.CanonicalMIMEHeaderKey): the first letter and every
    letter after ``-`` upper case, the rest lower case. Caddy's and Traefik's header matching sees only these."""
    out, upper = [], True
    for ch in name:
        out.append(ch.upper() if upper else ch.lower())
        upper = ch == "-"
    return "".join(out)


def regex_alternatives(boundary: ClientBoundary, skip: frozenset[str] = frozenset()) -> list[str]:
    """The boundary as regex alternatives matching any case and any ``_``/``-`` spelling (RE2 and Python alike);
    names in ``skip`` (folded) are matched only in their spellings with ``_`` or ``.``."""
    alternatives = [ODD] if boundary.underscores else []
    for name in boundary.names:
        if fold_header(name) in skip:
            if not boundary.underscores:
                alternatives += [re.escape(s.lower()) for s in spellings(name) if odd_separator(s)]
            continue
        alternatives.append(_loose(name))
    alternatives += [_loose(p) + ".*" for p in boundary.prefixes]
    return alternatives


def _loose(name: str) -> str:
    return SEPARATOR.join(re.escape(part.lower()) for part in re.split(r"[-_.]", name))
