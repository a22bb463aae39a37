"""``gateway decision-check URL``: replays hostile requests through a running front proxy, reports what reached the app.

Operators edit front configs by hand; this checks what is deployed rather than what was generated. Each row is
one request written byte for byte (header names, Host and path exactly as given) to ``URL``, the front proxy. What
reached the app is read from an app-facing echo, placed where the app is: ``python -m gateway.example_upstream``
(it answers every path with the method, path, query and headers it received, as JSON) or a route of the real app
given by ``--echo-path`` that answers the same shape (a JSON object with ``headers`` and ``method``).

A row passes when the request was refused before the app (any answer that is not the echo's) or when the echo
shows none of the row's hostile values and the method that was sent. Path, host and credential rows must not
reach the app at all: with the example upstream behind the front every path echoes, so "reached" is exact; with
``--echo-path`` on a real app, any answer below 400 counts as reached.

Exit status: 0 when nothing got through, 1 when a row did (named in the table), 2 when the check could not run
(the front did not answer, or a plain request did not come back from an echo).
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import ssl
import sys
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, TextIO

from gateway.decision.fronts.base import spellings

__all__ = ["Result", "Row", "command", "rows", "run"]

# Identity headers of the shipped example routes; --identity-header replaces them with your routes' own.
DEFAULT_IDENTITY = ("X-User-Id", "X-User-Roles", "X-User-Email", "X-Gateway-Identity")
DEFAULT_FAMILIES = ("X-User-", "X-Auth-")  # identity_header_prefixes' default
_MARK = "gwcheck"  # every hostile value carries it, or one of the addresses below
_ADDRESS = "198.51.100.66"  # TEST-NET-2: never a real client
_EVIL = "evil.gwcheck.example"


@dataclass(frozen=True)
class Row:
    """One hostile request. ``target``: a path, absolute; ``refuse``: it must never reach the app."""

    name: str
    method: str = "GET"
    target: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    host: str | None = None  # None: the URL's host
    evidence: tuple[str, ...] = ()  # none of these may appear in a header the app received
    refuse: bool = False
    credentials: bool = True  # sent with --token / --cookie when given
    websocket: bool = False


@dataclass
class Result:
    row: Row
    status: int | None  # None: no answer (the connection failed)
    saw: str  # what the app saw, or why the front's answer is not the app's
    leaked: bool
    echo: dict[str, Any] | None = field(default=None, repr=False)


def rows(route: str, echo: str, identity: tuple[str, ...] = DEFAULT_IDENTITY, token: str | None = None,
         cookie: str | None = None, websocket: str | None = None,
         families: tuple[str, ...] = DEFAULT_FAMILIES) -> list[Row]:
    """The table, for requests under ``route`` and an echo at ``echo`` (cross-site handshakes: at ``websocket``)."""
    return [*_header_rows(echo, identity, families), *_request_rows(route, echo, token, cookie, websocket)]


def _mark(label: str) -> str:
    return f"{_MARK}-{label}"


def _header_rows(echo: str, identity: tuple[str, ...], families: tuple[str, ...]) -> list[Row]:
    """One row per hostile header, each to the echo with a query of its own (never a cached decision)."""
    mark = _mark
    out: list[Row] = []
    q = "?" if "?" not in echo else "&"
    n = 0

    def header(name: str, value: str, evidence: str | None = None, method: str = "GET") -> None:
        nonlocal n
        n += 1
        out.append(Row(f"{name}: {value}", method, f"{echo}{q}gwcheck={n}", ((name, value),),
                       evidence=(evidence or value,)))

    for name in identity:
        for spelling in spellings(name):
            header(spelling, mark("root"), mark("root"))
        header(name.lower().replace("-", "_"), mark("root"), mark("root"))
    for family in families:
        header(f"{family}Admin", mark("true"))
        header(f"{family.replace('-', '_')}Admin", mark("true"))
    for name in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X_HTTP_Method_Override"):
        header(name, "DELETE", method="POST")
    for name in ("X-Original-URL", "X-Rewrite-URL", "X-Original-URI"):
        header(name, f"/admin/{mark('url')}")
    for name in ("Remote-User", "Remote_User", "X-Remote-User", "X-Forwarded-User", "X-Forwarded-Preferred-Username",
                 "X-WEBAUTH-USER", "X-Auth-Request-User"):
        header(name, mark("root"))
    header("X-Forwarded-Email", f"root@{_EVIL}")
    header("X-Forwarded-Groups", f"admin,{mark('group')}", mark("group"))
    header("X-Forwarded-Access-Token", mark("token"))
    header("Forwarded", f"for={_ADDRESS};host={_EVIL};proto=https", _ADDRESS)
    for name in ("X-Real-IP", "X_Real_IP", "True-Client-IP", "X-Client-IP", "CF-Connecting-IP", "X-Forwarded-For",
                 "X_Forwarded_For"):
        header(name, _ADDRESS)
    for name in ("X-Original-Host", "X-Host", "X-Forwarded-Host", "X-Forwarded-Server"):
        header(name, _EVIL)
    header("X-Forwarded-Proto", mark("proto"))
    header("X-Forwarded-Prefix", f"/{mark('prefix')}")
    header("X-Forwarded-Uri", f"/admin/{mark('uri')}")
    return out


def _request_rows(route: str, echo: str, token: str | None, cookie: str | None, websocket: str | None) -> list[Row]:
    """Path and host forms, credentials the front must refuse, cross-site websocket handshakes with the cookie."""
    mark = _mark
    out: list[Row] = []
    base = route.rstrip("/")
    for tail in ("..%2fadmin", "%2e%2e/admin", ".%2e/admin", "%252e%252e/admin", "x%2fy", "x;jsessionid=1",
                 "x/./y", "x/../y", "x//y", "x%00", "%ef%bc%8fx", "x?_method=DELETE"):
        out.append(Row(f"path {base}/{tail}", "POST" if "_method" in tail else "GET", f"{base}/{tail}", refuse=True))
    for host in ("a..b", "admin example", "host.example:99999", f"host.example@{_EVIL}"):
        out.append(Row(f"Host: {host}", target=echo, host=host, refuse=True))
    if token:
        out.append(Row("no credentials", target=echo, refuse=True, credentials=False))
        out.append(Row("forged token", target=echo, headers=(("Authorization", "Bearer eyJhbGciOiJub25lIn0.e30."),),
                       refuse=True, credentials=False))
        out.append(Row("Basic credentials", target=echo, credentials=False, refuse=True,
                       headers=(("Authorization", "Basic " + base64.b64encode(f"{mark('root')}:x".encode()).decode()),)))
    if cookie:
        for origin in (f"https://{_EVIL}", "null"):
            out.append(Row(f"websocket handshake from {origin} with the cookie", target=websocket or echo, refuse=True,
                           headers=(("Origin", origin),), websocket=True, credentials=False))
    return out


def _send(url: urllib.parse.SplitResult, row: Row, token: str | None, cookie: str | None,
          timeout: float) -> tuple[int, bytes, str]:
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if url.scheme == "https" else 80)
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(row.method, row.target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", row.host if row.host is not None else url.netloc)
        for name, value in row.headers:
            conn.putheader(name, value)
        if row.credentials and token:
            conn.putheader("Authorization", f"Bearer {token}")
        if (row.credentials or row.websocket) and cookie:
            conn.putheader("Cookie", cookie)
        if row.websocket:
            for name, value in (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
                                ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode())):
                conn.putheader(name, value)
        else:
            conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        body = b"" if resp.status == 101 else resp.read(1 << 20)
        return resp.status, body, resp.getheader("Content-Type", "")
    finally:
        conn.close()


def _echo(body: bytes) -> dict[str, Any] | None:
    try:
        seen = json.loads(body)
    except ValueError:
        return None
    if isinstance(seen, dict) and isinstance(seen.get("headers"), dict):
        return seen
    return None


def _judge(row: Row, status: int, body: bytes, exact: bool) -> Result:
    seen = _echo(body)
    if row.websocket and status == 101:
        return Result(row, status, "the handshake was accepted", True)
    if row.refuse:
        reached = seen is not None if exact else status < 400
        what = "the request itself" if reached else "-"
        return Result(row, status, what, reached, seen)
    if seen is None:
        return Result(row, status, "-" if status >= 400 else "an answer that is not the echo's", False)
    headers = {str(k): str(v) for k, v in seen["headers"].items()}
    found = [f"{k}: {v}" for k, v in headers.items() if any(e in v for e in row.evidence)]
    method = seen.get("method")
    if isinstance(method, str) and method != row.method:
        found.append(f"method {method}")
    return Result(row, status, "; ".join(found) if found else "nothing hostile", bool(found), seen)


def run(url: str, route: str = "/", echo_path: str | None = None, token: str | None = None, cookie: str | None = None,
        identity: tuple[str, ...] = DEFAULT_IDENTITY, timeout: float = 10.0, websocket: str | None = None,
        families: tuple[str, ...] = DEFAULT_FAMILIES) -> tuple[Result, list[Result]]:
    """The baseline (a plain request, expected back from the echo) and every row's result."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    if not route.startswith("/"):
        raise ValueError(f"--route {route!r} must start with /")
    echo = echo_path or (route.rstrip("/") + "/gateway-decision-check")
    exact = echo_path is None
    baseline_row = Row("plain request", target=echo)
    status, body, _ = _send(parts, baseline_row, token, cookie, timeout)
    baseline = Result(baseline_row, status, "the echo" if _echo(body) else "not an echo", False, _echo(body))
    results = []
    if baseline.echo is not None:
        for row in rows(route, echo, identity, token, cookie, websocket, families):
            try:
                status, body, _ = _send(parts, row, token, cookie, timeout)
            except (OSError, http.client.HTTPException) as exc:
                results.append(Result(row, None, f"no answer ({exc.__class__.__name__})", False))
                continue
            results.append(_judge(row, status, body, exact))
    return baseline, results


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def report(results: list[Result], out: TextIO) -> None:
    widths = (4, 58, 6, 60)
    print(f"{'#':<{widths[0]}} {'request':<{widths[1]}} {'front':<{widths[2]}} {'the app saw':<{widths[3]}} result", file=out)
    for i, r in enumerate(results, 1):
        status = "-" if r.status is None else str(r.status)
        verdict = "THROUGH" if r.leaked else "ok"
        print(f"{i:<{widths[0]}} {_clip(f'{r.row.method} {r.row.name}', widths[1]):<{widths[1]}} {status:<{widths[2]}} "
              f"{_clip(r.saw, widths[3]):<{widths[3]}} {verdict}", file=out)


def command(args: argparse.Namespace) -> int:
    identity = tuple(args.identity_header) if args.identity_header else DEFAULT_IDENTITY
    families = tuple(args.identity_prefix) if args.identity_prefix else DEFAULT_FAMILIES
    try:
        baseline, results = run(args.url, args.route, args.echo_path, args.token, args.cookie, identity, args.timeout,
                                args.websocket, families)
    except ValueError as exc:
        print(f"decision-check: {exc}", file=sys.stderr)
        return 2
    except (OSError, http.client.HTTPException) as exc:
        print(f"decision-check: {args.url} did not answer: {exc}", file=sys.stderr)
        return 2
    if baseline.echo is None:
        print(f"decision-check: a plain request to {baseline.row.target} came back {baseline.status}, not from an echo: "
              "run `python -m gateway.example_upstream` where the app is, or give --echo-path (and --token or --cookie "
              "for an authenticated route)", file=sys.stderr)
        return 2
    report(results, sys.stdout)
    through = [i for i, r in enumerate(results, 1) if r.leaked]
    silent = [r for r in results if r.status is None]
    if through:
        print(f"\n{len(through)} of {len(results)} got through: " + ", ".join(
            f"#{i} {results[i - 1].row.name}" for i in through), file=sys.stderr)
        return 1
    note = f" ({len(silent)} without an answer)" if silent else ""
    print(f"\nnothing got through: {len(results)} requests{note}", file=sys.stderr)
    return 0
