"""The signing algorithms the gateway mints tokens with: a module of its own, so `gateway --help` lists them
without loading the configuration models."""
from __future__ import annotations

__all__ = ["SIGNING_ALGORITHMS"]

SIGNING_ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
