"""The front proxies of decision mode, one module each; a new front is one module plus its line here
(and its name in ``config.decision.FRONTS``, which ``tests/unit/test_decision_configs.py`` compares)."""
from __future__ import annotations

from gateway.decision.fronts import caddy, envoy, haproxy, nginx, traefik
from gateway.decision.fronts.base import Deployment, FrontKind

__all__ = ["FRONTS", "Deployment", "FrontKind"]

FRONTS: dict[str, FrontKind] = {m.FRONT.name: m.FRONT for m in (nginx, caddy, traefik, haproxy, envoy)}
