"""An authentication gateway: issues JWTs, validates them on every request, injects identity headers.

The names below are imported on first use, so ``gateway --help`` and ``gateway
check`` do not load the server.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import create_app
    from gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["ConfigError", "GatewayConfig", "create_app", "load_config"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from gateway.app import create_app

        return create_app
    if name in {"ConfigError", "GatewayConfig", "load_config"}:
        import gateway.config

        return getattr(gateway.config, name)
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
