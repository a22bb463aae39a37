"""A dialect made of explicit settings only: paths, fields and rotation all from ``compat.profiles[]``."""

from __future__ import annotations

from gateway.dialects import gateway
from gateway.dialects.base import Dialect

__all__ = ["DIALECT"]


DIALECT = Dialect(
    "custom",
    gateway.DIALECT.style,
    {"prefix": "", "paths": {}, "rotate_refresh": False},
)
