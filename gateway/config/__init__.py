"""Configuration: one YAML file, parsed and validated once into frozen objects.

Every problem in a file is reported at once, each with its location
(``routes[2].upstream: not an absolute http(s) URL``), so an operator fixes a
bad file in one pass and a half-configured gateway never starts.

One module per part of the file: ``types`` (what every section is made of),
``tokens``, ``routes``, ``browser`` (compat, cookies, CORS), ``issuers``,
``ops`` (listen, store, endpoints, shutdown, metrics, admin, login
throttle), ``boundary`` (client headers, paths), ``limits``, then ``model``
(the whole file and the rules that span sections) and ``loading``.
"""
from __future__ import annotations

from gateway.algorithms import SIGNING_ALGORITHMS
from gateway.config.browser import Compat, CompatProfile, Cookies, Cors
from gateway.config.issuers import ExternalIssuer
from gateway.config.loading import load_config, parse_config, read_yaml
from gateway.config.model import GatewayConfig
from gateway.config.ops import Endpoints, LoginThrottleSettings, MetricsSettings, StoreSettings
from gateway.config.routes import IdentityJwt, Requirements, Route, WebsocketToken
from gateway.config.tokens import MIN_HS256_SECRET, OWN_ISSUER, KeySpec, Tokens
from gateway.config.types import ConfigError, parse_duration

__all__ = [
    "MIN_HS256_SECRET", "OWN_ISSUER", "SIGNING_ALGORITHMS", "Compat", "CompatProfile", "ConfigError", "Cookies", "Cors",
    "Endpoints", "ExternalIssuer", "GatewayConfig", "IdentityJwt", "KeySpec", "LoginThrottleSettings", "MetricsSettings", "Requirements", "Route",
    "StoreSettings", "Tokens", "WebsocketToken", "load_config", "parse_config", "parse_duration", "read_yaml",
]
