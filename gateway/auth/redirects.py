"""Where the browser may be sent after sign-in or logout: the one ``next`` check.

Open redirects through such a parameter are the classic vulnerability of this
feature, so the check is default-deny and written once. A value passes if it is

- a relative path on the gateway's own origin: it starts with exactly one
  ``/``, and neither it nor its percent-decoded forms contain a backslash, a
  control character or whitespace (browsers drop tabs and newlines, so
  ``/\\t/evil`` becomes ``//evil``), a ``//`` at its start, or a ``.``/``..``
  segment (``/..//evil`` normalises to ``//evil``); or
- an absolute ``http(s)://`` URL whose origin is ``public_url``'s or one of
  ``oidc.allowed_redirect_origins``, without user info, with the same rules
  for its path.

``https:evil.example`` (no ``//``), ``//evil.example``, ``/\\evil.example``,
``\\\\evil``, ``/%2F%2Fevil`` and ``%5C`` forms are all refused. Anything
refused is a ``ValueError``; callers answer 400 and never fall back to a
default they were not asked for.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

from yarl import URL

__all__ = ["MAX_NEXT_LENGTH", "page_next", "safe_next"]

MAX_NEXT_LENGTH = 2048
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]|[\u0080-\u009f\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f\u3000\ufeff]")
_ABSOLUTE = re.compile(r"^(https?)://([^/?#]*)([/?#].*)?$", re.IGNORECASE | re.DOTALL)


def _decoded_forms(value: str) -> list[str]:
    """``value`` and its percent-decodings until nothing changes (double encoding included), at most 4."""
    forms = [value]
    for _ in range(4):
        decoded = unquote(forms[-1], errors="strict") if "%" in forms[-1] else forms[-1]
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms


def _check_path(path: str) -> None:
    """A path (with query and fragment) that means the same path to every parser."""
    for form in _decoded_forms(path):
        if _FORBIDDEN.search(form):
            raise ValueError("next: contains a backslash, whitespace or a control character")
        if form.startswith("//"):
            raise ValueError("next: a path must not start with //")
        bare = re.split(r"[?#]", form, maxsplit=1)[0]
        if any(segment in {".", ".."} for segment in bare.split("/")):
            raise ValueError("next: dot segments are not accepted")


def page_next(values: list[str], public_url: str | None, allowed_origins: tuple[str, ...] = ()) -> str | None:
    """The one ``next`` of a page's query (``request.query.getall("next", [])``), checked as ``safe_next`` does; None
    when absent; ValueError when given twice or unsafe."""
    if len(values) > 1:
        raise ValueError("next: given more than once")
    return safe_next(values[0], public_url, allowed_origins) if values else None


def safe_next(value: object, public_url: str | None, allowed_origins: tuple[str, ...] = ()) -> str:
    """``value`` if the browser may be sent there, ``"/"`` when absent or empty; else ValueError."""
    if value is None or value == "":
        return "/"
    if not isinstance(value, str) or len(value) > MAX_NEXT_LENGTH or not value.isascii():
        raise ValueError("next: not a usable URL (percent-encode anything beyond ASCII)")
    try:
        _decoded_forms(value)
    except UnicodeDecodeError:
        raise ValueError("next: percent-encoding that is not UTF-8") from None
    if value.startswith("/"):
        _check_path(value)
        return value
    match = _ABSOLUTE.match(value)
    if match is None:
        raise ValueError("next: a relative path starting with / or an absolute URL of an allowed origin")
    if _FORBIDDEN.search(value) or "@" in match.group(2) or "%" in match.group(2):
        raise ValueError("next: not a usable URL")
    try:
        url = URL(value)
        origin = str(url.origin()).lower()
    except ValueError:
        raise ValueError("next: not a usable URL") from None
    allowed = set(allowed_origins)
    if public_url is not None:
        allowed.add(str(URL(public_url).origin()).lower())
    if origin not in allowed:
        raise ValueError("next: this origin is not in oidc.allowed_redirect_origins")
    _check_path(match.group(3) or "/")
    return value
