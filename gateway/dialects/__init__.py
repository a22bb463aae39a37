"""Token-endpoint dialects: what a frontend written for another backend expects of login, refresh and errors.

Each dialect is one module of this package (a name, a preset for
``compat.profiles[]``, an error style) listed in ``DIALECTS``. Configuration
validates ``compat.profiles[].profile`` and ``errors`` against this registry,
and the token endpoints and proxied routes word their errors with its styles:
a new dialect is one file plus its line below.
"""

from __future__ import annotations

from gateway.dialects import custom, djoser, flask_jwt_extended, simplejwt
from gateway.dialects import gateway as own
from gateway.dialects.base import Dialect, ErrorStyle

__all__ = ["DIALECTS", "Dialect", "ErrorStyle", "error_style"]

DIALECTS: dict[str, Dialect] = {d.DIALECT.name: d.DIALECT for d in (own, simplejwt, djoser, flask_jwt_extended, custom)}
_STYLES: dict[str, ErrorStyle] = {d.style.name: d.style for d in DIALECTS.values()}
STYLE_NAMES = tuple(_STYLES)


def error_style(name: str) -> ErrorStyle:
    """The style named by ``compat.errors`` or a profile's ``errors`` (validated against ``STYLE_NAMES``)."""
    return _STYLES[name]
