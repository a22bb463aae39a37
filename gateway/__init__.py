"""An authentication gateway: issues JWTs, validates them on every request, injects identity headers."""

from gateway.app import create_app
from gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["ConfigError", "GatewayConfig", "create_app", "load_config"]
__version__ = "0.1.0"
