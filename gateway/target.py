"""The request target: the path and the host a request names, checked once and used everywhere after.

An upstream acts on the path and host it receives, parsed by its own rules
(Tomcat drops ``;params``, Express routes case-insensitively, IIS trims a
trailing dot, some servers decode twice or fold Unicode). The gateway cannot
know which rules apply, so it refuses every form that two such parsers could
read differently, and matches what is left in the loosest reading any of them
applies (case-insensitively by default). The upstream then receives exactly the
segments that were matched:

- ``;`` in a segment: 400, or with ``paths.semicolons: strip`` the parameters
  are removed before matching and forwarding;
- dot segments, a segment ending in ``.`` or a space, empty segments,
  backslashes, encoded ``/``, ``\\``, ``;``, ``?``, ``#`` or control characters
  (either case of hex digit): 400 (a hop that decodes once would end the path
  at an encoded ``?`` or ``#``: ``/api/admin%3F/users`` read as ``/api/admin``);
- percent-escapes that survive one decoding (``%252e``): 400;
- non-ASCII characters whose compatibility form (NFKC) is ``.``, ``/``,
  ``\\``, ``;``, ``%`` or a space (fullwidth ``．``/``／``): 400;
- a query parameter ``_method`` (method override by query string): 400.

The host is the ``Host`` header normalised by ``net.parse_host`` (lowercase,
one trailing dot and the scheme's default port removed); anything that is not
a host name, IPv4 or bracketed IPv6 address with an optional port is a 400.
What the client used behind trusted proxies is ``forwarded.client_origin``.
"""
from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote_to_bytes

from gateway.config.boundary import Paths
from gateway.errors import GatewayError
from gateway.net import Host, parse_host

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.config import Route

__all__ = ["DEFAULT_PATH_RULES", "RequestPath", "fold_segment", "parse_target", "request_host"]

_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_STILL_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
# Encoded bytes that change a path's structure when an upstream decodes them:
# slash, backslash, semicolon, query and fragment delimiters, NUL and other controls.
_FORBIDDEN_DECODED = re.compile(rb"[/\\;?#\x00-\x1f\x7f]")
# What a compatibility form may not turn into: characters that give a path structure.
_STRUCTURAL = frozenset("./\\;%?# ")
# A segment of only these (RFC 3986 unreserved and sub-delims but ``;``) decodes to itself, and
# none of them is one _FORBIDDEN_DECODED refuses: the percent-decoding steps can be skipped.
_PLAIN = re.compile(r"[A-Za-z0-9._~!$&'()*+,=:@-]*\Z")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,=:@/-]*\Z")  # a path of _PLAIN segments: checked in one match
_OVERRIDE_PARAMS = frozenset({"_method"})

DEFAULT_PATH_RULES = Paths()


class RequestPath:
    """A request's path, checked: immutable (``Final``, as ``context.Client``)."""

    __slots__ = ("raw_segments", "segments", "query", "trailing_slash")

    def __init__(self, raw_segments: tuple[str, ...], segments: tuple[str, ...], query: str,
                 trailing_slash: bool) -> None:
        self.raw_segments: Final = raw_segments  # as forwarded, still percent-encoded (``;params`` removed in strip mode)
        self.segments: Final = segments  # decoded; routes match them folded (``fold_segment``)
        self.query: Final = query  # raw query string, without "?"
        self.trailing_slash: Final = trailing_slash

    @property
    def decoded(self) -> str:
        return "/" + "/".join(self.segments) + ("/" if self.trailing_slash and self.segments else "")

    def upstream_url(self, route: Route, query: str) -> str:
        """The upstream URL of this path on ``route`` (HTTP and websocket alike): its upstream, the raw path less
        the route's stripped segments, and ``query`` (the request's, less what the gateway took out of it)."""
        return route.upstream + self.forward_path(route.strip_segments) + (f"?{query}" if query else "")

    def forward_path(self, strip: int = 0) -> str:
        """The raw path to send upstream, without the first ``strip`` segments."""
        rest = self.raw_segments[strip:]
        if not rest:
            return "/"
        return "/" + "/".join(rest) + ("/" if self.trailing_slash else "")


def _bad(detail: str) -> GatewayError:
    return GatewayError.bad_request(detail)


def fold_segment(text: str, case_sensitive: bool = False) -> str:
    """The form a segment is matched in: as is, or lowercased (NFKC + casefold beyond ASCII)."""
    if case_sensitive:
        return text
    return text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()


def _check_text(text: str) -> None:
    if text in {".", ".."}:
        raise _bad("Dot segments are not allowed in the path")
    if text.endswith((".", " ")):
        raise _bad("A path segment may not end in a dot or a space")
    if _STILL_ENCODED.search(text):
        raise _bad("Double percent-encoding in the path")
    if not text.isascii():
        for char in text:
            if ord(char) > 0x7F and _STRUCTURAL & set(unicodedata.normalize("NFKC", char)):
                raise _bad("A Unicode compatibility form of . / \\ ; % or space in the path")


def _decode_segment(raw: str) -> str:
    if _PLAIN.match(raw):  # nothing encoded, nothing structural: decoding is the identity, the text checks remain
        _check_text(raw)
        return raw
    if _PCT.search(raw):
        raise _bad("Malformed percent-encoding in the path")
    data = unquote_to_bytes(raw)
    if _FORBIDDEN_DECODED.search(data):
        raise _bad("Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("The path is not valid UTF-8") from None
    _check_text(text)
    return text


def _without_params(raw: str, rules: Paths) -> str:
    if ";" not in raw:
        return raw
    if rules.semicolons == "reject":
        raise _bad("Path parameters (;) are not accepted")
    stripped = raw.split(";", 1)[0]
    if not stripped:
        raise _bad("Empty segments are not allowed in the path")
    return stripped


def _check_query(query: str) -> None:
    if "_method" not in query.lower() and "%" not in query:
        return
    for part in query.split("&"):
        name = unquote_to_bytes(part.partition("=")[0].replace("+", " ")).decode("utf-8", "replace")
        if name.strip().lower() in _OVERRIDE_PARAMS:
            raise _bad("Method override parameters are not accepted")


def parse_target(target: str, rules: Paths = DEFAULT_PATH_RULES) -> RequestPath:
    """Split an origin-form request target; absolute-form and ambiguous paths are refused.

    Only ``rules.semicolons`` matters here; ``rules.case_sensitive`` is the router's.
    """
    if "#" in target:  # no client sends one (RFC 9112 §3.2); an upstream could read it as path or query
        raise _bad("A request target cannot carry a fragment (#)")
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        raise _bad("The request target must be an absolute path")
    if "//" in path or "\\" in path:
        raise _bad("Empty segments or backslashes are not allowed in the path")
    _check_query(query)
    trailing = path.endswith("/") and path != "/"
    if path == "/":
        return RequestPath((), (), query, trailing)
    if _PLAIN_PATH.match(path):  # every segment _PLAIN (no ";" either): each decodes to itself, only dots to check
        plain = tuple(path.strip("/").split("/"))
        for segment in plain:
            if segment.endswith("."):
                _check_text(segment)  # raises: a dot segment, or one ending in a dot
        return RequestPath(plain, plain, query, trailing)
    raw = tuple(_without_params(s, rules) for s in path.strip("/").split("/"))
    return RequestPath(raw, tuple(_decode_segment(s) for s in raw), query, trailing)


def request_host(request: web.Request) -> Host:
    """The request's own Host, normalised; 400 if it is not a single valid host."""
    values = request.headers.getall("Host", [])
    if len(values) > 1:
        raise _bad("More than one Host header")
    if not values:
        if request.version >= (1, 1):
            raise _bad("HTTP/1.1 requests need a Host header")
        return Host("")
    try:
        return parse_host(values[0], request.scheme)
    except ValueError:
        raise _bad("The Host header is not a valid host") from None


